# NixOS VM test: keyroll rotates the passwords of a live PostgreSQL role and a
# live Redis ACL user, from the shell and from the sandboxed daemon; the new
# passwords work, the old ones fail, the consumer is restarted by systemctl from
# inside the sandbox, and the watchdog keeps the daemon alive.  A second
# machine checks timer mode.
#
#   nix build .#checks.x86_64-linux.vm           (flake.nix)
#   nix-build nix/tests/vm.nix                   (with <nixpkgs> on NIX_PATH)
#
# Needs Nix with nixpkgs and, to run in reasonable time, KVM.  It cannot run on
# the project's development machines (no nixpkgs, no KVM).
{
  pkgs ? import <nixpkgs> { },
  module ? ../module.nix,
}:

let
  # Test-only values.  They end up in the Nix store, which is fine for a
  # throwaway VM and never for a real machine: there, credentials are files
  # outside the store (services.keyroll.credentials).
  pgAdminPassword = "pgAdminPassw0rdOnlyForThisVmTest";
  pgInitialPassword = "pgInitialPassw0rdForTheStackRole";
  redisAdminPassword = "redisAdminPassw0rdOnlyForThisVm";
  redisInitialPassword = "redisInitialPassw0rdForTheStack";

  keyrollCredentials = {
    pg-admin = "/etc/keyroll-test/pg-admin";
    redis-admin = "/etc/keyroll-test/redis-admin";
  };
in
pkgs.testers.runNixOSTest {
  name = "keyroll";

  nodes.machine =
    {
      config,
      lib,
      pkgs,
      ...
    }:
    {
      imports = [ module ];
      virtualisation.memorySize = 1024;

      environment.etc."keyroll-test/pg-admin" = {
        text = pgAdminPassword;
        mode = "0400";
      };
      environment.etc."keyroll-test/redis-admin" = {
        text = redisAdminPassword;
        mode = "0400";
      };
      environment.systemPackages = [ pkgs.redis ];

      # PostgreSQL on localhost; the stack's role starts with a known password.
      services.postgresql = {
        enable = true;
        authentication = lib.mkForce ''
          local all postgres peer
          local all all scram-sha-256
          host all all 127.0.0.1/32 scram-sha-256
          host all all ::1/128 scram-sha-256
        '';
        initialScript = pkgs.writeText "keyroll-test-init.sql" ''
          ALTER ROLE postgres PASSWORD '${pgAdminPassword}';
          CREATE ROLE stack LOGIN PASSWORD '${pgInitialPassword}';
        '';
      };

      # Redis with an ACL file (ACL SAVE needs one): an admin user for keyroll,
      # the stack's user, and no password-less default user.
      environment.etc."keyroll-test/redis.conf".text = ''
        bind 127.0.0.1
        port 6379
        dir /var/lib/redis-keyroll-test
        aclfile /var/lib/redis-keyroll-test/users.acl
      '';
      systemd.services.redis-keyroll-test = {
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" ];
        preStart = ''
          if [ ! -e /var/lib/redis-keyroll-test/users.acl ]; then
            printf '%s\n' \
              'user default off' \
              'user admin on >${redisAdminPassword} ~* &* +@all' \
              'user stack on >${redisInitialPassword} ~* &* +@all' \
              > /var/lib/redis-keyroll-test/users.acl
          fi
        '';
        serviceConfig = {
          ExecStart = "${pkgs.redis}/bin/redis-server /etc/keyroll-test/redis.conf";
          DynamicUser = true;
          StateDirectory = "redis-keyroll-test";
        };
      };

      # A consumer of pg_password: keyroll restarts it after a rotation.
      systemd.services.stack-app = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.ExecStart = "${pkgs.coreutils}/bin/sleep infinity";
      };

      # What an admin does once before enabling keyroll: put the current
      # passwords where keyroll keeps them, and `keyroll init` to adopt them.
      systemd.services.keyroll-test-seed = {
        before = [ "keyroll.service" ];
        requiredBy = [ "keyroll.service" ];
        path = [ config.services.keyroll.package ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          UMask = "0077";
          LoadCredential = lib.mapAttrsToList (name: path: "${name}:${path}") keyrollCredentials;
        };
        script = ''
          install -d -m 0755 /var/lib/keyroll
          install -d -m 0700 /var/lib/keyroll/secrets
          cd /var/lib/keyroll/secrets
          [ -e pg_password ] || printf '%s\n' '${pgInitialPassword}' > pg_password
          [ -e redis_password ] || printf '%s\n' '${redisInitialPassword}' > redis_password
          keyroll init
        '';
      };

      services.keyroll = {
        enable = true;
        mode = "daemon";
        credentials = keyrollCredentials;
        settings = {
          # Short schedules so that the daemon rotates during the test.
          defaults.schedule = "3m";
          notify.on = [ "failure" ];
          targets.pg = {
            type = "postgres";
            host = "127.0.0.1";
            port = 5432;
            user = "stack";
            admin_user = "postgres";
            admin_password_file = "credential:pg-admin";
          };
          targets.cache = {
            type = "redis";
            host = "127.0.0.1";
            port = 6379;
            user = "stack";
            admin_user = "admin";
            admin_password_file = "credential:redis-admin";
            # The old password stops working at once, so the test can check it.
            grace = "0s";
          };
          secrets.pg_password = {
            kind = "password";
            target = "pg";
            services = [ "stack-app" ];
            restart = [ "systemd:stack-app.service" ];
            health = [ "tcp:127.0.0.1:5432" ];
          };
          secrets.redis_password = {
            kind = "password";
            target = "cache";
            services = [ "stack-app" ];
          };
        };
      };
      systemd.services.keyroll = {
        after = [
          "postgresql.service"
          "postgresql-setup.service"
          "redis-keyroll-test.service"
        ];
        wants = [
          "postgresql.service"
          "redis-keyroll-test.service"
        ];
      };
    };

  nodes.timer =
    { ... }:
    {
      imports = [ module ];
      services.keyroll = {
        enable = true;
        mode = "timer";
        timer.onCalendar = "*-*-* 04:00:00";
        settings.secrets.api_token = {
          kind = "api_key";
          schedule = "5s";
          unattended = true;
        };
      };
    };

  testScript = ''
    import time

    PG_INITIAL = "${pgInitialPassword}"
    REDIS_INITIAL = "${redisInitialPassword}"
    # `keyroll` in a shell is the module's wrapper: the CLI in a transient unit
    # with the units' config and credentials (systemd-run --pipe --wait).
    JOURNAL = "journalctl --no-pager -u keyroll.service -u postgresql.service -u redis-keyroll-test.service"


    def secret(name):
        return machine.succeed(f"cat /var/lib/keyroll/secrets/{name}").strip()


    def pg_login(password):
        return f"PGPASSWORD='{password}' psql -h 127.0.0.1 -U stack -d postgres -tAc 'select 1'"


    def redis_ping(password):
        return f"REDISCLI_AUTH='{password}' redis-cli -h 127.0.0.1 --user stack ping"


    def redis_works(password):
        return "PONG" in machine.succeed(redis_ping(password) + " 2>&1 || true")


    def unit(prop, name="keyroll.service"):
        return machine.succeed(f"systemctl show -p {prop} --value {name}").strip()


    start_all()

    with subtest("services up, keyroll started (Type=notify: active means READY=1)"):
        machine.wait_for_unit("redis-keyroll-test.service")
        machine.wait_for_unit("postgresql.service")
        machine.wait_until_succeeds(
            "runuser -u postgres -- psql -tAc \"select 1 from pg_roles where rolname = 'stack'\" | grep -qx 1"
        )
        machine.wait_for_unit("keyroll.service")
        assert unit("Type") == "notify"
        assert unit("WatchdogUSec") == "1min", unit("WatchdogUSec")
        machine.succeed("keyroll status")
        # The wrapper passes keyroll's exit code through: 2 for a usage error.
        machine.fail("keyroll no-such-command")

    with subtest("hardening of the installed unit"):
        print(machine.succeed("systemd-analyze security --no-pager keyroll.service | tail -n 1"))
        machine.succeed("systemd-analyze security --threshold=45 keyroll.service")
        assert unit("LimitCORE") == "0", unit("LimitCORE")
        assert unit("WatchdogSignal") == "9", unit("WatchdogSignal")  # SIGKILL
        # ACME's filter: @system-service without @privileged and @resources, chown allowed again.
        allowed = unit("SystemCallFilter").split()
        assert "fchownat" in allowed and "fchown" in allowed, allowed
        for denied in ("setuid", "mount", "setrlimit", "setpriority"):
            assert denied not in allowed, denied

    with subtest("keyroll rotate all: new passwords work, old ones fail"):
        # The adopted values (the seeded ones, unless the daemon was quicker)
        # are what the services accept: store and services are in step.
        pg_old, redis_old = secret("pg_password"), secret("redis_password")
        machine.succeed(pg_login(pg_old))
        assert redis_works(redis_old)
        app_before = unit("InvocationID", "stack-app.service")
        machine.succeed("keyroll rotate all --wait 120")
        pg_new, redis_new = secret("pg_password"), secret("redis_password")
        assert pg_new != pg_old and redis_new != redis_old
        machine.succeed(pg_login(pg_new))
        machine.fail(pg_login(pg_old))
        machine.fail(pg_login(PG_INITIAL))
        assert redis_works(redis_new)
        # grace = "0s": the old Redis password is retired at the end of the
        # rotation, or by the daemon's next cycle.
        machine.wait_until_succeeds(f"! {redis_ping(redis_old)} 2>&1 | grep -q PONG", timeout=240)
        machine.wait_until_succeeds(f"! {redis_ping(REDIS_INITIAL)} 2>&1 | grep -q PONG", timeout=60)
        assert unit("InvocationID", "stack-app.service") != app_before, "stack-app was not restarted"
        machine.fail(f"{JOURNAL} | grep -F -e '{pg_new}' -e '{redis_new}'")

    with subtest("the daemon rotates on its schedule, inside its sandbox"):
        app_before = unit("InvocationID", "stack-app.service")
        machine.wait_until_succeeds(
            f"test \"$(cat /var/lib/keyroll/secrets/pg_password)\" != '{pg_new}'", timeout=400
        )
        machine.wait_until_succeeds(
            f"test \"$(cat /var/lib/keyroll/secrets/redis_password)\" != '{redis_new}'", timeout=120
        )
        pg_daemon, redis_daemon = secret("pg_password"), secret("redis_password")
        machine.wait_until_succeeds(pg_login(pg_daemon), timeout=60)
        machine.fail(pg_login(pg_new))
        assert redis_works(redis_daemon)
        machine.wait_until_succeeds(f"! {redis_ping(redis_new)} 2>&1 | grep -q PONG", timeout=240)
        # systemctl try-restart from inside the sandbox (AF_UNIX, /run/systemd/private).
        machine.wait_until_succeeds(
            f"test \"$(systemctl show -p InvocationID --value stack-app.service)\" != '{app_before}'", timeout=60
        )

    with subtest("the watchdog keeps the daemon alive past WatchdogSec"):
        pid = unit("MainPID")
        time.sleep(75)
        machine.succeed("systemctl is-active keyroll.service")
        assert unit("MainPID") == pid, "keyroll.service was restarted"
        assert unit("NRestarts") == "0"
        machine.fail("journalctl --no-pager -u keyroll.service | grep -F 'Watchdog timeout'")
        machine.fail(f"{JOURNAL} | grep -F -e '{pg_daemon}' -e '{redis_daemon}'")

    with subtest("timer mode: the timer is armed, the daemon is not running"):
        timer.wait_for_unit("timers.target")
        timer.succeed("systemctl is-active keyroll-rotate.timer")
        timer.fail("systemctl is-active keyroll.service")
        calendar = timer.succeed("systemctl show -p TimersCalendar --value keyroll-rotate.timer")
        assert "04:00:00" in calendar and "00:00:00" not in calendar, calendar

    with subtest("timer mode: keyroll run rotates what is due, inside the sandbox"):
        timer.succeed("keyroll init")
        timer.succeed("keyroll status")
        before = timer.succeed("cat /var/lib/keyroll/secrets/api_token").strip()
        time.sleep(6)
        timer.succeed("systemctl start keyroll-rotate.service")
        assert timer.succeed("systemctl show -p Result --value keyroll-rotate.service").strip() == "success"
        rotated = timer.succeed("cat /var/lib/keyroll/secrets/api_token").strip()
        assert rotated != before

    with subtest("timer mode: an admin rotates one secret through the wrapper"):
        timer.succeed("keyroll rotate api_token")
        assert timer.succeed("cat /var/lib/keyroll/secrets/api_token").strip() != rotated

    with subtest("the modes conflict: starting the daemon stops the timer"):
        timer.succeed("systemctl start keyroll.service")
        timer.fail("systemctl is-active keyroll-rotate.timer")
  '';
}
