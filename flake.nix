{
  description = "keyroll: keeps the credentials of a self-hosted stack fresh, and never loses one";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});

      # A representative configuration, evaluated through the module: building
      # its config file runs `keyroll config validate --static` on it.
      staticCheckModule = {
        services.keyroll = {
          enable = true;
          mode = "timer";
          credentials = {
            notify-urls = "/etc/keyroll/notify-urls";
            pg-admin = "/etc/keyroll/pg-admin-password";
          };
          settings = {
            defaults = {
              schedule = "quarterly";
              window = "Sun 02:00-05:00";
              reminder = "7d";
            };
            notify = {
              urls_file = "credential:notify-urls";
              on = [
                "failure"
                "success"
                "reminder"
                "recovered"
              ];
            };
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
              admin_password_secret = "redis_admin_password";
              grace = "10m";
            };
            secrets.postgres_password = {
              kind = "password";
              target = "pg";
              services = [ "aidb" ];
              restart = [ "systemd:aidb.service" ];
              health = [ "tcp:127.0.0.1:5432" ];
            };
            secrets.redis_password = {
              target = "cache";
              services = [ "aidb" ];
            };
            secrets.redis_admin_password = {
              services = [ "redis" ];
              schedule = "yearly";
            };
            secrets.stack_api_key = {
              kind = "api_key";
              services = [ "global" ];
              unattended = true;
            };
          };
        };
      };
    in
    {
      packages = forAllSystems (
        system: pkgs: {
          keyroll = pkgs.callPackage ./nix/package.nix { };
          default = self.packages.${system}.keyroll;
        }
      );

      overlays.default = final: _prev: { keyroll = final.callPackage ./nix/package.nix { }; };

      # The module's package defaults to `pkgs.callPackage ./nix/package.nix { }`,
      # i.e. this repository built against the system's nixpkgs.
      nixosModules.keyroll = ./nix/module.nix;
      nixosModules.default = self.nixosModules.keyroll;

      checks = forAllSystems (
        system: pkgs:
        let
          staticSystem = nixpkgs.lib.nixosSystem {
            modules = [
              self.nixosModules.default
              staticCheckModule
              {
                nixpkgs.hostPlatform = system;
                boot.isContainer = true;
              }
            ];
          };
          # Only this module's assertions: the sample system has no file systems
          # or boot loader, which NixOS would rightly assert on.
          failed = builtins.filter (
            a: nixpkgs.lib.hasPrefix "services.keyroll" a.message && !a.assertion
          ) staticSystem.config.assertions;
        in
        {
          package = self.packages.${system}.keyroll;
          # The NixOS VM test (needs KVM to run in reasonable time).
          vm = import ./nix/tests/vm.nix {
            inherit pkgs;
            module = self.nixosModules.default;
          };
          # The module's assertions hold and the generated file passes
          # `keyroll config validate --static` (a build-time runCommand).
          config-static =
            if failed != [ ] then
              throw (builtins.concatStringsSep "\n" (map (a: a.message) failed))
            else
              staticSystem.config.environment.etc."keyroll/config.toml".source;
        }
      );
    };
}
