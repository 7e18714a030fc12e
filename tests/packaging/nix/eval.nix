# Evaluate the real nix/module.nix against the stand-ins lib.nix and pkgs.nix:
# its option declarations are merged with a configuration given as JSON, its
# `config` is resolved (mkIf / mkMerge / overrides) and merged with the rest of
# that configuration, and the parts the tests look at come back as plain data.
#
#   nix-instantiate --eval --strict --json tests/packaging/nix/eval.nix \
#     --argstr configJSON '{"services": {"keyroll": {"enable": true}}}'
#
# `config` may be given as a Nix value instead (e.g. a node of nix/tests/vm.nix).
{
  configJSON ? "{}",
  config ? builtins.fromJSON configJSON,
  module ? ../../../nix/module.nix,
  # Passed to the pkgs stand-in: { cross = true; } or { withOverlay = true; }.
  pkgsArgsJSON ? "{}",
}:

let
  lib = import ./lib.nix;
  pkgs = import ./pkgs.nix ({ inherit lib; } // builtins.fromJSON pkgsArgsJSON);

  userConfig = lib.resolve config;
  userServices = userConfig.services or { };

  evaluated = import module {
    inherit lib pkgs;
    config = optionValues;
    options = { };
  };

  # Only services.keyroll is declared by the module; the rest of the user's
  # configuration (e.g. systemd.services.keyroll.after) is merged as it is.
  optionValues = {
    services.keyroll = lib.evalOptions "services.keyroll" evaluated.options.services.keyroll null (
      lib.optional (userServices ? keyroll) userServices.keyroll
    );
  };
  userRest = userConfig // {
    services = removeAttrs userServices [ "keyroll" ];
  };

  final = lib.mergeValues [
    optionValues
    userRest
    (lib.resolve evaluated.config)
  ];

  cfg = final.services.keyroll;
  etcConfig = ((final.environment or { }).etc or { })."keyroll/config.toml".source or null;
  # The TOML file the module renders (before its build-time check): the module
  # evaluated once more with checkConfig off, whose /etc file is that file itself.
  unchecked = import module {
    inherit lib pkgs;
    config.services.keyroll = optionValues.services.keyroll // {
      checkConfig = false;
    };
    options = { };
  };
  rawConfig = (((lib.resolve unchecked.config).environment or { }).etc or { })."keyroll/config.toml".source or null;
in
{
  options = cfg // {
    package = cfg.package.outPath;
  };
  # Option documentation, as `nixos-option` or the manual would show it.
  descriptions = {
    settings = evaluated.options.services.keyroll.settings.description;
    paths = builtins.mapAttrs (_: option: option.description) (
      evaluated.options.services.keyroll.settings.type.module.options.paths
    );
  };
  assertions = final.assertions or [ ];
  failedAssertions = map (a: a.message) (builtins.filter (a: !a.assertion) (final.assertions or [ ]));
  warnings = final.warnings or [ ];
  systemd = final.systemd or { };
  environment = final.environment or { };
  # The wrapper on the system path, when there is one.
  wrapper =
    let
      found = builtins.filter (p: (p.bin or null) == "keyroll") ((final.environment or { }).systemPackages or [ ]);
    in
    if found == [ ] then null else (builtins.head found).text;
  # The TOML the module renders from `settings`, and the store path it would have.
  configText = if rawConfig == null then null else rawConfig.text;
  rawConfigPath = if rawConfig == null then null else rawConfig.outPath;
  # The checked config file the units and /etc/keyroll/config.toml use.
  configFile =
    if etcConfig == null then
      null
    else
      {
        path = etcConfig.outPath;
        name = etcConfig.name;
        script = etcConfig.script or null;
      };
}
