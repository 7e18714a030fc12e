# A small stand-in for nixpkgs' `pkgs`, enough to evaluate nix/module.nix.
# Nothing is built: a "derivation" is an attribute set whose outPath is a fake
# store path derived from its inputs, so that the same inputs give the same path
# (the tests compare paths the module wires together).  formats.toml renders
# real TOML (a small renderer; nixpkgs uses remarshal), which the tests parse
# with tomllib and hand to `keyroll config validate --static`.
{
  lib,
  # Cross compilation: the build machine cannot run the target's programs.
  cross ? false,
  # What the flake's overlay adds: pkgs.keyroll.
  withOverlay ? false,
}:

let
  inherit (builtins)
    attrNames
    concatStringsSep
    filter
    hashString
    isAttrs
    isBool
    isFloat
    isInt
    isList
    isString
    match
    substring
    toJSON
    ;

  fakeDerivation =
    name: inputs:
    inputs
    // {
      inherit name;
      type = "derivation";
      outPath = "/nix/store/${substring 0 32 (hashString "sha256" "${name}\n${toJSON inputs}")}-${name}";
    };

  tomlKey = key: if match "[A-Za-z0-9_-]+" key != null then key else toJSON key;

  tomlValue =
    value:
    if isString value then
      toJSON value
    else if isBool value then
      (if value then "true" else "false")
    else if isInt value || isFloat value then
      toString value
    else if isList value then
      "[" + concatStringsSep ", " (map tomlValue value) + "]"
    else if value == null then
      throw "TOML has no null value"
    else
      throw "cannot render ${toJSON value} as a TOML value";

  # A table's keys and values first, then its sub-tables as [a.b] sections; a
  # table holding only sub-tables gets no header of its own (valid TOML).
  tomlSections =
    prefix: set:
    let
      names = attrNames set;
      tables = filter (name: isAttrs set.${name}) names;
      scalars = filter (name: !isAttrs set.${name}) names;
      header = if prefix == [ ] then "" else "[${concatStringsSep "." (map tomlKey prefix)}]\n";
      body = concatStringsSep "" (map (name: "${tomlKey name} = ${tomlValue set.${name}}\n") scalars);
      own = if scalars != [ ] || (tables == [ ] && prefix != [ ]) then [ (header + body) ] else [ ];
    in
    own ++ builtins.concatMap (name: tomlSections (prefix ++ [ name ]) set.${name}) tables;

  toTOML = value: concatStringsSep "\n" (tomlSections [ ] value);

  pkgs = rec {
    writeText = name: text: fakeDerivation name { inherit text; };
    runCommand = name: env: script: fakeDerivation name { inherit env script; };
    callPackage =
      path: args:
      fakeDerivation "keyroll-standin" {
        package = baseNameOf (toString path);
        inherit args;
      };
    # The test itself, minus its node modules (functions have no JSON form).
    testers.runNixOSTest =
      test:
      fakeDerivation "vm-test-run-${test.name}" {
        inherit (test) name testScript;
        nodes = attrNames test.nodes;
      };
    writeShellScriptBin =
      name: text:
      fakeDerivation name {
        inherit text;
        bin = name;
      };
    stdenv = {
      hostPlatform = {
        system = if cross then "aarch64-linux" else "x86_64-linux";
      };
      buildPlatform = {
        system = "x86_64-linux";
        canExecute = platform: platform.system == "x86_64-linux";
      };
    };
    # The build machine's packages (a different set when cross compiling).
    buildPackages =
      if cross then
        {
          callPackage =
            path: args:
            fakeDerivation "keyroll-build-standin" {
              package = baseNameOf (toString path);
              inherit args;
            };
        }
      else
        pkgs;
    formats.toml = _: {
      type = lib.types.anything // {
        description = "TOML value";
      };
      generate = name: value: writeText name (toTOML value);
    };
  };
in
pkgs
// lib.optionalAttrs withOverlay {
  keyroll = fakeDerivation "keyroll-from-overlay" { };
}
