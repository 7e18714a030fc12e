# A small stand-in for nixpkgs' `lib`, enough to evaluate nix/module.nix
# without nixpkgs (which these machines cannot reach).  The functions the module
# calls behave like their nixpkgs namesakes for the inputs it gives them; the
# module-system part (mkOption, mkIf, mkMerge, mkOverride, types, submodules
# with a freeformType) is a simplified re-implementation used by eval.nix:
# definitions are merged by priority (mkForce < plain < mkDefault < option
# default), attribute sets recursively, lists by concatenation, other values
# only when equal; every option value is checked against its type.
let
  inherit (builtins)
    attrNames
    concatLists
    concatMap
    elem
    filter
    foldl'
    head
    isAttrs
    isBool
    isFunction
    isInt
    isList
    isPath
    isString
    listToAttrs
    mapAttrs
    match
    stringLength
    substring
    toJSON
    ;

  lib = rec {
    # --- strings, lists, attribute sets ---------------------------------------------
    inherit
      concatLists
      concatMap
      filter
      mapAttrs
      ;
    inherit (builtins) any all concatStringsSep;

    hasPrefix = prefix: str: substring 0 (stringLength prefix) str == prefix;
    hasSuffix =
      suffix: str:
      let
        n = stringLength str;
        m = stringLength suffix;
      in
      n >= m && substring (n - m) m str == suffix;
    removePrefix =
      prefix: str: if hasPrefix prefix str then substring (stringLength prefix) (stringLength str) str else str;
    removeSuffix =
      suffix: str: if hasSuffix suffix str then substring 0 (stringLength str - stringLength suffix) str else str;
    concatMapStrings = f: list: builtins.concatStringsSep "" (map f list);
    importJSON = path: builtins.fromJSON (builtins.readFile path);
    unique = foldl' (acc: x: if elem x acc then acc else acc ++ [ x ]) [ ];
    mapAttrsToList = f: set: map (name: f name set.${name}) (attrNames set);
    genAttrs =
      names: f:
      listToAttrs (
        map (name: {
          inherit name;
          value = f name;
        }) names
      );
    filterAttrs =
      pred: set:
      listToAttrs (
        concatMap (
          name:
          if pred name set.${name} then
            [
              {
                inherit name;
                value = set.${name};
              }
            ]
          else
            [ ]
        ) (attrNames set)
      );
    optional = cond: x: if cond then [ x ] else [ ];
    optionals = cond: xs: if cond then xs else [ ];
    optionalAttrs = cond: set: if cond then set else { };
    optionalString = cond: str: if cond then str else "";
    escapeShellArg = arg: "'${builtins.replaceStrings [ "'" ] [ "'\\''" ] (toString arg)}'";
    literalExpression = text: {
      _type = "literalExpression";
      inherit text;
    };

    # --- module system (subset) -------------------------------------------------------
    mkOption = attrs: attrs // { _type = "option"; };
    mkEnableOption =
      name:
      mkOption {
        type = types.bool;
        default = false;
        example = true;
        description = "Whether to enable ${name}.";
      };
    mkIf = condition: content: {
      _type = "if";
      inherit condition content;
    };
    mkMerge = contents: {
      _type = "merge";
      inherit contents;
    };
    mkOverride = priority: content: {
      _type = "override";
      inherit priority content;
    };
    mkOptionDefault = mkOverride 1500;
    mkDefault = mkOverride 1000;
    mkForce = mkOverride 50;

    types = rec {
      mkType = name: description: check: { inherit name description check; };
      anything = mkType "anything" "anything" (_: true);
      bool = mkType "bool" "boolean" isBool;
      int = mkType "int" "signed integer" isInt;
      str = mkType "str" "string" isString;
      lines = str;
      path = mkType "path" "path" (v: isPath v || (isString v && hasPrefix "/" v));
      package = mkType "package" "package" (v: isAttrs v && v ? outPath);
      strMatching =
        pattern: mkType "strMatching" "string matching the pattern ${pattern}" (v: isString v && match pattern v != null);
      enum = values: mkType "enum" "one of ${builtins.concatStringsSep ", " (map toJSON values)}" (v: elem v values);
      nullOr = t: mkType "nullOr" "null or ${t.description}" (v: v == null || t.check v);
      either = a: b: mkType "either" "${a.description} or ${b.description}" (v: a.check v || b.check v);
      oneOf =
        ts: mkType "oneOf" (builtins.concatStringsSep " or " (map (t: t.description) ts)) (v: builtins.any (t: t.check v) ts);
      listOf = t: mkType "listOf" "list of ${t.description}" (v: isList v && builtins.all t.check v);
      attrsOf =
        t: mkType "attrsOf" "attribute set of ${t.description}" (v: isAttrs v && builtins.all t.check (builtins.attrValues v));
      submodule = module: (mkType "submodule" "submodule" isAttrs) // { inherit module; };
    };

    # --- evaluation helpers (used by eval.nix) ----------------------------------------
    nothing = {
      _type = "nothing";
    };
    isNothing = v: isAttrs v && (v._type or null) == "nothing";
    isOverride = v: isAttrs v && (v._type or null) == "override";
    isOption = v: isAttrs v && (v._type or null) == "option";
    # A plain attribute set merges key by key; a derivation or a typed value is a leaf.
    isPlainAttrs = v: isAttrs v && !(v ? _type) && !(v ? outPath);

    # Push mkIf / mkMerge / mkOverride into plain values: a false mkIf becomes
    # `nothing` (dropped from its parent), a mkMerge is merged on the spot, an
    # override is kept as a wrapper for mergeValues to rank.
    resolve =
      v:
      if !isAttrs v then
        v
      else if (v._type or null) == "if" then
        (if v.condition then resolve v.content else nothing)
      else if (v._type or null) == "merge" then
        mergeValues (map resolve v.contents)
      else if isOverride v then
        mkOverride v.priority (resolve v.content)
      else if isPlainAttrs v then
        filterAttrs (_: x: !isNothing x) (mapAttrs (_: resolve) v)
      else
        v;

    priorityOf = v: if isOverride v then v.priority else 100;
    strip = v: if isOverride v then v.content else v;

    # Keep the definitions of the best (lowest) priority, without their wrappers.
    best =
      defs:
      let
        present = filter (v: !isNothing v) defs;
        top = foldl' (acc: v: if priorityOf v < acc then priorityOf v else acc) 10000 present;
      in
      map strip (filter (v: priorityOf v == top) present);

    mergeValues =
      defs:
      let
        chosen = best defs;
      in
      if chosen == [ ] then
        nothing
      else if builtins.all isPlainAttrs chosen then
        let
          names = unique (concatMap attrNames chosen);
        in
        filterAttrs (_: x: !isNothing x) (
          listToAttrs (
            map (name: {
              inherit name;
              value = mergeValues (concatMap (d: if d ? ${name} then [ d.${name} ] else [ ]) chosen);
            }) names
          )
        )
      else if builtins.all isList chosen then
        concatLists chosen
      else if builtins.all (v: v == head chosen) chosen then
        head chosen
      else
        throw "conflicting definitions: ${toJSON chosen}";

    checkType =
      path: type: value:
      if type.check value then
        value
      else
        throw "The option `${path}' has a value of the wrong type (expected ${type.description}): ${toJSON value}";

    # Values of the declared options `decls` (a tree of mkOption results) under
    # `path`, from the list of definitions `defs`; `freeform` is the type of
    # undeclared keys, or null when they are errors.
    evalOptions =
      path: decls: freeform: defs:
      let
        plainDefs = best defs;
        declared = mapAttrs (
          name: decl:
          let
            sub = concatMap (d: if d ? ${name} then [ d.${name} ] else [ ]) plainDefs;
            p = "${path}.${name}";
          in
          if isOption decl then evalOption p decl sub else evalOptions p decl null sub
        ) decls;
        undeclared = filter (name: !(decls ? ${name})) (unique (concatMap attrNames plainDefs));
        extra =
          if undeclared == [ ] then
            { }
          else if freeform == null then
            throw "The option `${path}.${head undeclared}' does not exist."
          else
            listToAttrs (
              map (name: {
                inherit name;
                value = checkType "${path}.${name}" freeform (
                  mergeValues (concatMap (d: if d ? ${name} then [ d.${name} ] else [ ]) plainDefs)
                );
              }) undeclared
            );
      in
      declared // extra;

    evalOption =
      path: option: defs:
      let
        type = option.type or types.anything;
        all = (if option ? default then [ (mkOptionDefault option.default) ] else [ ]) ++ defs;
      in
      if type.name == "submodule" then
        let
          module = if isFunction type.module then type.module { inherit lib; } else type.module;
        in
        evalOptions path (module.options or { }) (module.freeformType or null) all
      else if best all == [ ] then
        throw "The option `${path}' is used but not defined."
      else
        checkType path type (mergeValues all);
  };
in
lib
