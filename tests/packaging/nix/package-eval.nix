# Evaluate nix/package.nix with stand-ins for lib, python3Packages, coreutils,
# sops, age and git, and return what buildPythonApplication would be given, as
# plain data, plus what nixpkgs' builder makes of it (`effective`): the tests
# check the dependencies against pyproject.toml and run postInstall and the
# install-time checks in bash against a temporary $out.
#
#   nix-instantiate --eval --strict --json tests/packaging/nix/package-eval.nix
{
  # Where the stand-in coreutils lives: its bin/kill ends up in ExecReload=.
  coreutils ? "/usr",
  # Whether the stand-in python3Packages has pyrage (not every nixpkgs has).
  withPyrage ? true,
  # Likewise lightkube and ahocorasick-rs.
  withLightkube ? true,
  withMatcher ? true,
  # The package's own switches for optional extras.
  withPostgres ? true,
  withRedis ? true,
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
    "pytestCheckHook"
    "pytest-timeout"
    "prometheus-client"
  ]
  ++ lib.optional withPyrage "pyrage"
  ++ lib.optional withLightkube "lightkube"
  ++ lib.optional withMatcher "ahocorasick-rs";
  python3Packages = lib.genAttrs pythonNames fakePackage // {
    # As nixpkgs' buildPythonPackage (mk-python-derivation.nix) does: a Python
    # package has no check phase of its own; its checks run after the install,
    # and `doInstallCheck = attrs.doCheck or true` is set AFTER the package's
    # attributes, so a package's own doInstallCheck is overridden by doCheck.
    buildPythonApplication =
      attrs:
      attrs
      // {
        doCheck = false;
        doInstallCheck = attrs.doCheck or true;
        nativeInstallCheckInputs = attrs.nativeCheckInputs or [ ];
        given = attrs;
      };
  };

  package = import ../../../nix/package.nix;
  # Like callPackage: only the arguments the package asks for.
  attrs = package (
    builtins.intersectAttrs (builtins.functionArgs package) {
      inherit lib python3Packages withPostgres withRedis;
      coreutils = {
        outPath = coreutils;
      };
      sops = fakePackage "sops";
      age = fakePackage "age";
      git = fakePackage "git";
    }
  );
  given = attrs.given;
  checkHooks = map (p: p.pname) attrs.nativeInstallCheckInputs;
  # pytestCheckHook's phase: preCheck, pytest, postCheck (unless the package
  # gives its own checkPhase, which then replaces the install check phase).
  usesPytestHook = builtins.elem "pytestCheckHook" checkHooks && !(given ? checkPhase);
in
{
  inherit (given)
    pname
    version
    pyproject
    src
    makeWrapperArgs
    postInstall
    pythonImportsCheck
    meta
    ;
  given = {
    doCheck = given.doCheck or null;
    doInstallCheck = given.doInstallCheck or null;
    postCheck = given.postCheck or "";
    postInstallCheck = given.postInstallCheck or "";
    pytestFlagsArray = given.pytestFlagsArray or [ ];
    disabledTests = given.disabledTests or [ ];
    disabledTestPaths = given.disabledTestPaths or [ ];
  };
  # What the builder really does.
  effective = {
    inherit (attrs) doCheck doInstallCheck;
    inherit checkHooks usesPytestHook;
    # The shell the install check phase runs (with pytest itself left out),
    # empty when it does not run.
    installCheckScript = lib.optionalString attrs.doInstallCheck (
      (if given ? checkPhase then given.checkPhase else "")
      + lib.optionalString usesPytestHook ((given.preCheck or "") + "\n" + (given.postCheck or ""))
      + "\n"
      + (given.postInstallCheck or "")
    );
  };
  build-system = map (p: p.pname) given.build-system;
  dependencies = map (p: p.pname) given.dependencies;
}
