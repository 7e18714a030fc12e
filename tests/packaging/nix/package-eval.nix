# Evaluate nix/package.nix with stand-ins for lib, python3Packages, coreutils,
# sops and age, and return what buildPythonApplication would be given, as
# plain data: the tests check the dependencies against pyproject.toml and run
# postInstall / postInstallCheck in bash against a temporary $out.
#
#   nix-instantiate --eval --strict --json tests/packaging/nix/package-eval.nix
{
  # Where the stand-in coreutils lives: its bin/kill ends up in ExecReload=.
  coreutils ? "/usr",
  # Whether the stand-in python3Packages has pyrage (not every nixpkgs has).
  withPyrage ? true,
}:

let
  baseLib = import ./lib.nix;
  lib = baseLib // {
    importTOML = path: builtins.fromTOML (builtins.readFile path);
    makeBinPath = packages: builtins.concatStringsSep ":" (map (p: "${p}/bin") packages);
    licenses.mit = "MIT";
    platforms.linux = [
      "x86_64-linux"
      "aarch64-linux"
    ];
    fileset = {
      maybeMissing = path: if builtins.pathExists path then path else null;
      unions = builtins.filter (x: x != null);
      toSource =
        { root, fileset }:
        {
          root = toString root;
          files = map toString fileset;
        };
    };
  };

  fakePackage = name: {
    pname = name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  pythonNames = [
    "setuptools"
    "apscheduler"
    "sdnotify"
    "apprise"
    "tomli-w"
    "rich"
    "psycopg"
    "redis"
    "pymysql"
  ] ++ lib.optional withPyrage "pyrage";
  python3Packages = lib.genAttrs pythonNames fakePackage // {
    buildPythonApplication = attrs: attrs;
  };

  attrs = import ../../../nix/package.nix {
    inherit lib python3Packages;
    coreutils = {
      outPath = coreutils;
    };
    sops = fakePackage "sops";
    age = fakePackage "age";
  };
in
{
  inherit (attrs)
    pname
    version
    pyproject
    src
    makeWrapperArgs
    postInstall
    doCheck
    doInstallCheck
    postInstallCheck
    pythonImportsCheck
    meta
    ;
  build-system = map (p: p.pname) attrs.build-system;
  dependencies = map (p: p.pname) attrs.dependencies;
}
