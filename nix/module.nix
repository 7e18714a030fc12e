# NixOS module: services.keyroll.
#
# The units and their hardening come from the package (systemd/ in the repo,
# installed by package.nix with store paths substituted): `systemd.packages`
# brings them in and this module overrides only what it must, in drop-ins:
# ExecStart (with --config), LoadCredential, ReadWritePaths and User/Group (and
# LimitCORE=0 once more), plus wantedBy for the chosen mode and the timer's
# OnCalendar.  It also creates the writable folders (tmpfiles) and puts a
# `keyroll` wrapper on the system path that runs the CLI with the units'
# configuration and credentials.
#
#   services.keyroll = {
#     enable = true;
#     mode = "daemon";                      # or "timer": a daily `keyroll run`
#     credentials.pg-admin = "/etc/keyroll/pg-admin-password";
#     settings = {
#       targets.pg = { type = "postgres"; host = "127.0.0.1"; user = "stack";
#                      admin_user = "postgres"; admin_password_file = "credential:pg-admin"; };
#       secrets.pg_password = { target = "pg"; restart = [ "systemd:app.service" ]; };
#     };
#   };
{
  config,
  lib,
  pkgs,
  ...
}:

let
  inherit (lib) mkOption mkIf mkMerge types;

  cfg = config.services.keyroll;
  opt = "services.keyroll";

  dataDir = "/var/lib/keyroll";
  settingsFormat = pkgs.formats.toml { };

  # keyroll's configuration schema (`keyroll config schema`; a test keeps this copy
  # in step): the option documentation below comes from it.
  schema = lib.importJSON ./schema.json;
  optionDoc = section: key: schema.${section}.options.${key}.doc;
  sectionDocs = lib.concatStringsSep "\n" (
    lib.mapAttrsToList (name: section: "- `${name}`: ${section.doc}") schema
  );

  # keyroll resolves a relative path against its config file's folder, which is in
  # the read-only Nix store here: a SOPS store's bundle and .sops.yaml get
  # absolute defaults in ${dataDir}, where the units may write.
  storeSettings = cfg.settings.store or { };
  usesSops = (storeSettings.kind or "directory") == "sops";
  metricsFile = cfg.metrics.textfile;
  metricsDir = if metricsFile == null then null else dirOf metricsFile;
  renderedSettings =
    cfg.settings
    // lib.optionalAttrs (metricsFile != null) {
      metrics = (cfg.settings.metrics or { }) // {
        textfile = metricsFile;
      };
    }
    // lib.optionalAttrs usesSops {
      store = {
        bundle = "${dataDir}/secrets.sops.yaml";
        sops_config = "${dataDir}/.sops.yaml";
      }
      // storeSettings;
    };
  sopsPath = key: renderedSettings.store.${key};

  rawConfigFile = settingsFormat.generate "keyroll.toml" renderedSettings;

  # Build-time check: `config validate --static` parses the file and checks
  # every key and value against keyroll's schema, touching no other file, no
  # credential and no service, so it runs in the build sandbox.  It runs on the
  # build machine: when that cannot execute the target's programs (cross
  # compilation), the build platform's keyroll checks the file.
  checkPackage =
    if pkgs.stdenv.buildPlatform.canExecute pkgs.stdenv.hostPlatform then
      cfg.package
    else
      pkgs.buildPackages.keyroll or (pkgs.buildPackages.callPackage ./package.nix { });
  configFile =
    if cfg.checkConfig then
      pkgs.runCommand "keyroll-config.toml" { } ''
        ${checkPackage}/bin/keyroll --config ${rawConfigFile} config validate --static
        cp ${rawConfigFile} $out
      ''
    else
      rawConfigFile;

  keyroll = "${cfg.package}/bin/keyroll --config ${configFile}";

  # `keyroll` for an admin's shell: the CLI with the units' configuration and
  # credentials, in a transient unit (as borgbackup's borg-job-NAME wrappers
  # give the job's settings), so `keyroll status` or `keyroll rotate NAME`
  # works in timer mode too, where no daemon holds the credentials.
  wrapperProperties = map (line: "LoadCredential=${line}") credentialLines ++ [
    "LimitCORE=0"
    "UMask=0077"
    "User=${cfg.user}"
    "Group=${cfg.group}"
  ];
  wrapper = pkgs.writeShellScriptBin "keyroll" ''
    exec systemd-run --pipe --wait --quiet --collect --same-dir --service-type=exec \
      ${lib.concatMapStrings (p: "-p ${lib.escapeShellArg p} ") wrapperProperties}\
      ${keyroll} "$@"
  '';

  # A folder is writable by the units when it is /var/lib/keyroll
  # (StateDirectory, ReadWritePaths in the unit files) or an extraWritablePaths
  # entry, or lies below one.
  isUnder = root: dir: dir == root || lib.hasPrefix "${lib.removeSuffix "/" root}/" dir;
  writablePaths = cfg.extraWritablePaths ++ lib.optional (metricsDir != null) metricsDir;
  writableRoots = [ dataDir ] ++ writablePaths;
  isWritable = dir: lib.any (root: isUnder root dir) writableRoots;

  folderOptions = [
    "secrets_dir"
    "backup_dir"
    "state_dir"
  ];
  # Every folder the units may write must exist when they start: systemd
  # cannot set up ReadWritePaths= on a missing one, and both units would fail
  # (226/NAMESPACE).  /var/lib/keyroll is StateDirectory=; the rest is created
  # at boot by systemd-tmpfiles: backups and state private, the secrets folder
  # 0755 when created and then left to keyroll (services must reach their files
  # in it), any other writable folder 0755, owned by the units' user.
  folderRules = lib.concatMap (
    name:
    let
      dir = cfg.settings.paths.${name};
      mode = if name == "secrets_dir" then "-" else "0700";
    in
    lib.optional (!(isUnder dataDir dir)) {
      path = dir;
      rule = "d ${dir} ${mode} ${cfg.user} ${cfg.group} - -";
    }
  ) folderOptions;
  extraRules = map (dir: {
    path = dir;
    rule = "d ${dir} 0755 ${cfg.user} ${cfg.group} - -";
  }) (lib.unique (lib.filter (dir: !(isUnder dataDir dir)) writablePaths));
  # One rule a folder (tmpfiles ignores a second line for the same path): the
  # settings folder's own mode wins over the generic one.
  tmpfilesRules =
    let
      folderPaths = map (r: r.path) folderRules;
    in
    map (r: r.rule) (folderRules ++ lib.filter (r: !(builtins.elem r.path folderPaths)) extraRules);

  # keyroll's store (the secrets folder of a directory store, the bundle of a
  # SOPS store), its backups and its journal must survive a reboot and a NixOS
  # activation: /run is a tmpfs (and sops-nix rebuilds /run/secrets on every
  # activation), /tmp and /dev/shm may be too.  A SOPS store's rendered copies
  # (secrets_dir) may live there: keyroll rewrites them from the bundle.
  volatileRoots = [
    "/run"
    "/var/run"
    "/tmp"
    "/dev/shm"
  ];
  isVolatile = path: lib.any (root: isUnder root path) volatileRoots;
  persistentPaths =
    lib.optional (!usesSops) {
      option = "settings.paths.secrets_dir";
      path = cfg.settings.paths.secrets_dir;
    }
    ++ lib.optional usesSops {
      option = "settings.store.bundle";
      path = sopsPath "bundle";
    }
    ++ [
      {
        option = "settings.paths.backup_dir";
        path = cfg.settings.paths.backup_dir;
      }
      {
        option = "settings.paths.state_dir";
        path = cfg.settings.paths.state_dir;
      }
    ];

  inStore = path: isUnder builtins.storeDir (toString path);

  credentialLines = lib.mapAttrsToList (name: path: "${name}:${toString path}") cfg.credentials;

  # Every "credential:NAME" string in the settings, with where it was found; also
  # in an http target's auth, "basic-file:USER:credential:NAME" and
  # "bearer-file:credential:NAME".
  credentialRefs =
    let
      credentialName =
        value:
        let
          found = builtins.match "(basic-file:[^:]+:|bearer-file:)?credential:(.+)" value;
        in
        if found == null then null else builtins.elemAt found 1;
      walk =
        keypath: value:
        if builtins.isAttrs value then
          lib.concatLists (lib.mapAttrsToList (name: walk (keypath ++ [ name ])) value)
        else if builtins.isList value then
          lib.concatMap (walk keypath) value
        else if builtins.isString value && credentialName value != null then
          [
            {
              option = lib.concatStringsSep "." ([ "${opt}.settings" ] ++ keypath);
              name = credentialName value;
              inherit value;
            }
          ]
        else
          [ ];
    in
    walk [ ] cfg.settings;

  # What both services get on top of the packaged unit.
  serviceOverrides = command: {
    serviceConfig = {
      # Reset the packaged ExecStart, then give ours.
      ExecStart = [
        ""
        "${keyroll} ${command}"
      ];
      LoadCredential = credentialLines;
      ReadWritePaths = writablePaths;
      User = cfg.user;
      Group = cfg.group;
      # Also in the packaged units; repeated so that no package can bring core dumps back.
      LimitCORE = 0;
    };
  };
in
{
  options.services.keyroll = {
    enable = lib.mkEnableOption "keyroll, which rotates the credentials of a self-hosted stack";

    package = mkOption {
      type = types.package;
      # pkgs.keyroll first: the flake's overlay (overlays.default) provides it.
      default = pkgs.keyroll or (pkgs.callPackage ./package.nix { });
      defaultText = lib.literalExpression "pkgs.keyroll or (pkgs.callPackage ./nix/package.nix { })";
      description = "The keyroll package; its units (lib/systemd/system) carry the hardening.";
    };

    mode = mkOption {
      type = types.enum [
        "daemon"
        "timer"
      ];
      default = "daemon";
      description = ''
        How keyroll runs: `daemon` starts keyroll.service (`keyroll daemon`, a
        scheduler with a systemd watchdog) at boot; `timer` starts
        keyroll-rotate.timer, which runs `keyroll run` (rotate what is due, then
        exit) on `timer.onCalendar`.  The two units conflict: one mode at a time.
      '';
    };

    timer.onCalendar = mkOption {
      type = types.str;
      default = "daily";
      example = "*-*-* 03:00:00";
      description = ''
        When keyroll-rotate.timer fires in timer mode (systemd.time(7) calendar
        syntax).  keyroll itself decides which secrets are due, so this only
        needs to be at least as frequent as the shortest schedule.
      '';
    };

    settings = mkOption {
      type = types.submodule {
        freeformType = settingsFormat.type;
        options.paths = {
          secrets_dir = mkOption {
            type = types.strMatching "/.*";
            default = "${dataDir}/secrets";
            description = ''
              ${optionDoc "paths" "secrets_dir"}  Absolute here; outside
              ${dataDir} it must be listed in `${opt}.extraWritablePaths`.
            '';
          };
          backup_dir = mkOption {
            type = types.strMatching "/.*";
            default = "${dataDir}/backups";
            description = "${optionDoc "paths" "backup_dir"}  Absolute here; same rule as secrets_dir.";
          };
          state_dir = mkOption {
            type = types.strMatching "/.*";
            default = "${dataDir}/state";
            description = "${optionDoc "paths" "state_dir"}  Absolute here; same rule as secrets_dir.";
          };
        };
      };
      default = { };
      example = lib.literalExpression ''
        {
          defaults.schedule = "monthly";
          notify = { urls_file = "credential:notify-urls"; on = [ "failure" "success" ]; };
          targets.pg = {
            type = "postgres"; host = "127.0.0.1"; port = 5432; user = "stack";
            admin_user = "postgres"; admin_password_file = "credential:pg-admin";
          };
          secrets.pg_password = { target = "pg"; restart = [ "systemd:app.service" ]; };
        }
      '';
      description = ''
        keyroll's configuration, written to a TOML file in the Nix store and
        checked at build time with `keyroll config validate --static`.  See
        `keyroll config generate` for every key.  The store is world-readable:
        put tokens and passwords in files passed through `${opt}.credentials`
        and refer to them as "credential:NAME" (notify.urls_file,
        targets.<name>.admin_password_file, an http target's
        auth = "basic-file:USER:credential:NAME" or "bearer-file:credential:NAME";
        the age identity of a SOPS store is the credential named age-key).

        Sections (from keyroll's schema):
        ${sectionDocs}
      '';
    };

    credentials = mkOption {
      type = types.attrsOf types.str;
      default = { };
      example = {
        notify-urls = "/etc/keyroll/notify-urls";
        pg-admin = "/run/keys/pg-admin-password";
        age-key = "/etc/keyroll/age-key.txt";
      };
      description = ''
        systemd credentials (LoadCredential=NAME:PATH) for both units; keyroll
        reads them as "credential:NAME" ($CREDENTIALS_DIRECTORY/NAME).  PID 1
        reads PATH, so it may stay readable by root only.  Paths in the Nix
        store are refused: everything there is world-readable.
      '';
    };

    extraWritablePaths = mkOption {
      type = types.listOf (types.strMatching "/.*");
      default = [ ];
      example = [ "/run/keyroll" ];
      description = ''
        Folders the units may write besides ${dataDir} (ProtectSystem=strict
        makes everything else read-only).  Every `settings.paths` folder must be
        under ${dataDir} or one of these.  Each is created at boot
        (systemd-tmpfiles, owned by `${opt}.user`) if missing: systemd cannot
        start a unit whose writable folder does not exist.  keyroll's store,
        backups and journal must stay on persistent storage (an assertion
        refuses them under /run); a folder in /run suits only the rendered
        copies of a SOPS store (`settings.paths.secrets_dir`).
      '';
    };

    user = mkOption {
      type = types.str;
      default = "root";
      description = ''
        User the units run as.  root by default: keyroll restarts the services
        that use a secret with `systemctl try-restart` (PID 1 allows root over
        its private socket) and gives secret files to service groups (chown, with
        CAP_CHOWN).  Another user needs a polkit rule allowing
        org.freedesktop.systemd1.manage-units on those units, membership of the
        groups it gives files to, and must exist (users.users).
      '';
    };

    group = mkOption {
      type = types.str;
      default = "root";
      description = "Group the units run as (see `${opt}.user`).";
    };

    metrics.textfile = mkOption {
      type = types.nullOr (types.strMatching "/.*");
      default = null;
      example = "/var/lib/prometheus/node-exporter/keyroll.prom";
      description = ''
        Where keyroll writes its Prometheus metrics (`settings.metrics.textfile`),
        for node_exporter's textfile collector
        (services.prometheus.exporters.node.enabledCollectors = [ "textfile" ] and
        extraFlags = [ "--collector.textfile.directory=/var/lib/prometheus/node-exporter" ]).
        Its folder is made writable for the units and created at boot (0755);
        the file itself is 0644 (`settings.metrics.mode`).  null: no metrics.
      '';
    };

    checkConfig = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Run `keyroll config validate --static` on the generated file at build
        time (turn off only when the package cannot run on the build machine).
      '';
    };
  };

  config = mkIf cfg.enable (mkMerge [
    {
      assertions =
        [
          {
            assertion = cfg.mode != "timer" || builtins.match "[[:space:]]*" cfg.timer.onCalendar == null;
            message = ''
              ${opt}.timer.onCalendar is empty, but ${opt}.mode = "timer": keyroll-rotate.timer would never fire.
              Give a systemd calendar expression such as "daily", or use mode = "daemon".'';
          }
        ]
        ++ lib.mapAttrsToList (name: path: {
          assertion = !(inStore path);
          message = ''
            ${opt}.credentials.${name} = "${toString path}" is in the Nix store (${builtins.storeDir}), which every local user can read.
            Keep the file outside the store (e.g. /etc/keyroll/${name} or /run/keys/${name}) and give its path as a string.'';
        }) cfg.credentials
        ++ lib.mapAttrsToList (name: _: {
          assertion = builtins.match "[A-Za-z0-9_.@-]+" name != null;
          message = ''${opt}.credentials."${name}": a credential name may hold only letters, digits and _ . @ -'';
        }) cfg.credentials
        ++ map (name: {
          assertion = isWritable cfg.settings.paths.${name};
          message = ''
            ${opt}.settings.paths.${name} = "${cfg.settings.paths.${name}}" is outside the folders keyroll's units may write (ProtectSystem=strict).
            Put it under ${dataDir}, or add it (or a folder above it) to ${opt}.extraWritablePaths.'';
        }) folderOptions
        ++ map (p: {
          assertion = !(isVolatile p.path);
          message = ''
            ${opt}.${p.option} = "${p.path}" is in memory (a tmpfs, rebuilt at boot; sops-nix also rebuilds
            /run/secrets on every activation): a rotated value, a backup or the journal of a rotation in flight
            would be lost. Keep keyroll's store on persistent storage under ${dataDir} (the default), and let
            services read rendered copies: with store.kind = "sops", settings.paths.secrets_dir may be a tmpfs
            such as /run/keyroll, which keyroll keeps up to date from the bundle.'';
        }) persistentPaths
        ++ lib.optionals usesSops [
          {
            assertion = lib.hasPrefix "/" (sopsPath "bundle") && isWritable (dirOf (sopsPath "bundle"));
            message = ''
              ${opt}.settings.store.bundle = "${sopsPath "bundle"}" must be an absolute path in a folder keyroll's units may write
              (a relative one would point into the Nix store). Leave it unset for ${dataDir}/secrets.sops.yaml,
              or add its folder to ${opt}.extraWritablePaths.'';
          }
          {
            assertion = lib.hasPrefix "/" (sopsPath "sops_config");
            message = ''
              ${opt}.settings.store.sops_config = "${sopsPath "sops_config"}" must be an absolute path
              (a relative one would point into the Nix store). Leave it unset for ${dataDir}/.sops.yaml.'';
          }
        ]
        ++ lib.optional usesSops {
          assertion = cfg.credentials ? age-key || (storeSettings.age_key_file or "") != "";
          message = ''
            ${opt}.settings.store.kind = "sops", but the units have no age identity to decrypt the bundle with:
            set ${opt}.credentials.age-key (a file outside the Nix store), or settings.store.age_key_file.
            (sops' last fallback, ~/.config/sops/age/keys.txt, is hidden from the units by ProtectHome=yes.)'';
        }
        ++ map (ref: {
          assertion = cfg.credentials ? ${ref.name};
          message = ''
            ${ref.option} = "${ref.value}", but ${opt}.credentials.${ref.name} is not set:
            the units would have no credential of that name.'';
        }) credentialRefs;

      warnings = lib.optional ((cfg.settings.notify or { }).urls or [ ] != [ ]) ''
        ${opt}.settings.notify.urls puts Apprise URLs (often holding tokens) into the world-readable Nix store;
        prefer notify.urls_file = "credential:notify-urls" with ${opt}.credentials.notify-urls.'';

      # `keyroll` in a shell is the wrapper (the units' config and credentials);
      # the package's own program stays at ${cfg.package}/bin/keyroll.
      environment.systemPackages = [ wrapper ];
      # The CLI finds the same file as the units when run by root.
      environment.etc."keyroll/config.toml".source = configFile;

      systemd.packages = [ cfg.package ];
      systemd.services.keyroll = serviceOverrides "daemon";
      systemd.services.keyroll-rotate = serviceOverrides "run" // {
        # A switch must not start a rotation run: the timer does.
        restartIfChanged = false;
      };

      systemd.tmpfiles.rules = tmpfilesRules;
    }

    (mkIf (cfg.mode == "daemon") {
      systemd.services.keyroll.wantedBy = [ "multi-user.target" ];
    })

    (mkIf (cfg.mode == "timer") {
      systemd.timers.keyroll-rotate = {
        wantedBy = [ "timers.target" ];
        # Reset the packaged OnCalendar=daily, then give ours.
        timerConfig.OnCalendar = [
          ""
          cfg.timer.onCalendar
        ];
      };
    })
  ]);
}
