# Evaluate flake.nix's outputs offline: `nixpkgs` is replaced by the stand-ins
# (lib.nix, pkgs.nix) and `nixpkgs.lib.nixosSystem` by eval.nix, which
# evaluates the real nix/module.nix with the attribute-set modules it is given.
#
#   nix-instantiate --eval --strict --json tests/packaging/nix/flake-outputs.nix
let
  lib = import ./lib.nix;
  pkgs = import ./pkgs.nix { inherit lib; };
  systems = [
    "x86_64-linux"
    "aarch64-linux"
  ];

  nixosSystem =
    { modules }:
    let
      result = import ./eval.nix { config = lib.mergeValues (builtins.filter builtins.isAttrs modules); };
    in
    {
      config = {
        inherit (result) assertions;
        environment.etc."keyroll/config.toml".source = {
          outPath = result.configFile.path;
          inherit (result.configFile) script;
          inherit (result) configText;
        };
      };
      # The path modules given (the flake's nixosModules), for the tests to see.
      pathModules = map toString (builtins.filter (m: !builtins.isAttrs m) modules);
    };

  nixpkgs = {
    lib = lib // {
      inherit nixosSystem;
    };
    legacyPackages = lib.genAttrs systems (_: pkgs);
  };

  flake = import ../../../flake.nix;
  self = flake.outputs { inherit self nixpkgs; };
in
{
  inherit (flake) description inputs;
  outputNames = builtins.attrNames self;
  packages = builtins.mapAttrs (_: builtins.mapAttrs (_: drv: drv.outPath)) self.packages;
  nixosModules = builtins.mapAttrs (_: toString) self.nixosModules;
  checks = builtins.mapAttrs (
    _: checks:
    checks
    // {
      package = checks.package.outPath;
      vm = {
        inherit (checks.vm) name nodes;
      };
      config-static = {
        path = checks.config-static.outPath;
        inherit (checks.config-static) script configText;
      };
    }
  ) self.checks;
}
