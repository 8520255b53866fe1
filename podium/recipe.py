"""Recipes: YAML -> OmegaConf -> profile -> CLI dotlist -> pydantic -> a validated DAG of stages.

Every error names the dotted path of the offending key, the value found and what was expected, so a
user can fix a 300-line recipe without reading podium's code.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import re
import sys
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, ClassVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ConfigDict, ValidationError

from podium.errors import ConfigError
from podium.registry import get_task, stage_kind, stage_kinds

# the plugin every recipe loads first: podium's own stage kinds and tasks register like anyone's
BUILTINS = "podium.builtins"
# ${recipe_dir:} in a recipe is the directory of its file, so a recipe can name files shipped next to it
_RECIPE_DIR: ContextVar[Path] = ContextVar("recipe_dir")
OmegaConf.register_resolver("recipe_dir", lambda: str(_RECIPE_DIR.get()), replace=True)
_REF = re.compile(r"^(?P<stage>[A-Za-z_][\w-]*)(?:\[(?P<member>\d+)\])?(?:@(?P<sel>[^@]*))?$")


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@dataclass(frozen=True)
class Ref:
    """A reference to another stage's output: ``name``, ``name@best``, ``name@last``, ``name@epoch=N``;
    ``name[i]@...`` is member ``i`` of a sweep."""

    stage: str
    select: str = "best"
    epoch: int | None = None
    member: int | None = None

    @classmethod
    def parse(cls, text: str, path: str) -> Ref:
        m = _REF.match(str(text))
        if not m:
            raise ConfigError(f"{path}: {text!r} is not a stage reference (expected 'stage', "
                              "'stage@best', 'stage@last', 'stage@epoch=N' or 'stage[member]@...')")
        sel, member = m.group("sel"), m.group("member")
        member = int(member) if member is not None else None
        if sel is None or sel in ("best", "last"):
            return cls(m.group("stage"), sel or "best", member=member)
        ep = re.fullmatch(r"epoch=(\d+)", sel)
        if not ep or int(ep.group(1)) < 1:
            raise ConfigError(f"{path}: bad selector '@{sel}' in {text!r} (expected @best, @last or "
                              "@epoch=N with N >= 1)")
        return cls(m.group("stage"), "epoch", int(ep.group(1)), member)

    def __str__(self) -> str:
        member = f"[{self.member}]" if self.member is not None else ""
        return self.stage + member + (f"@epoch={self.epoch}" if self.select == "epoch" else f"@{self.select}")


class StageConfig(Strict):
    """Fields every stage has. Kinds subclass it; tasks may subclass a kind's config further."""

    kind: str
    needs: list[str] = []
    task: str | None = None
    seed: int | None = None

    # dotted fields that do not change results (left out of the stage hash)
    unhashed: ClassVar[tuple[str, ...]] = ()

    def nested(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(field, kind, raw config) of stage configs embedded in this one (a search stage's trial)."""
        return []

    def references(self) -> list[tuple[str, str, tuple[str, ...]]]:
        """(field path, reference text, kinds the referenced stage may be) for what this stage reads."""
        return []


@dataclass
class StageNode:
    """One stage of the validated DAG. ``members`` holds one config per sweep member (or one)."""

    name: str
    kind: str
    task: str | None
    configs: list[StageConfig]
    needs: list[str]
    references: list[tuple[str, Ref, tuple[str, ...]]] = field(default_factory=list)

    @property
    def config(self) -> StageConfig:
        return self.configs[0]

    @property
    def is_sweep(self) -> bool:
        return len(self.configs) > 1


@dataclass
class Recipe:
    name: str
    task: str | None
    seed: int
    data_root: str | None
    stages: dict[str, StageNode]
    order: list[str]
    source: Path | None = None
    profile: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


class _RecipeTop(Strict):
    name: str
    task: str | None = None
    seed: int = 0
    data: dict[str, Any] = {}
    plugins: list[str] = []
    stages: dict[str, dict[str, Any]]


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _walk(model: type[BaseModel], loc: Sequence[Any]) -> tuple[type[BaseModel] | None, list[Any]]:
    """(the pydantic model class that owns the field at ``loc``, to list the keys allowed there; ``loc``
    without the tags pydantic inserts for a discriminated union's member, which are no recipe keys)."""

    def models(types: Sequence[Any]) -> list[type[BaseModel]]:
        return [c for c in types if isinstance(c, type) and issubclass(c, BaseModel)]

    def tags(cls: type[BaseModel]) -> list[str]:
        info = cls.model_fields.get("name")
        return [str(t) for t in getattr(info.annotation, "__args__", ())] if info else []

    candidates: list[Any] = [model]
    keys: list[Any] = []
    for i, part in enumerate(loc):
        owners = models(candidates)
        tagged = [c for c in owners if str(part) in tags(c)]
        if len(owners) > 1 and tagged:
            candidates = tagged
            continue
        keys.append(part)
        info = next((c.model_fields[str(part)] for c in owners if str(part) in c.model_fields), None)
        if info is None:
            return None, keys + list(loc[i + 1 :])
        candidates = [info.annotation, *getattr(info.annotation, "__args__", ())]
    found = models(candidates)
    return (found[0] if found else None), keys


def format_validation_error(err: ValidationError, model: type[BaseModel], prefix: str) -> str:
    """One line per problem: ``dotted.path: what is wrong; found X; expected Y``."""
    lines = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        owner, _ = _walk(model, loc[:-1])
        _, loc = _walk(model, loc)
        path = ".".join([prefix, *[f"[{p}]" if isinstance(p, int) else str(p) for p in loc]]).strip(".")
        path = path.replace(".[", "[")
        found = e.get("input")
        if e["type"] == "extra_forbidden":
            allowed = sorted(owner.model_fields) if owner else []
            hint = _suggest(loc[-1], allowed)
            lines.append(f"{path}: unknown key{hint} (allowed here: {', '.join(allowed)})")
        elif e["type"] == "missing":
            lines.append(f"{path}: required key is missing")
        else:
            lines.append(f"{path}: {e['msg'].removeprefix('Value error, ')}; found {found!r}")
    return "\n".join(lines)


def validate(model: type[BaseModel], data: Any, prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, model, prefix)) from None


def _import_plugin(plugin: str, base: Path, where: str) -> None:
    """A module name, or a ``.py`` file relative to the recipe (a user's own task next to its recipe)."""
    try:
        if not plugin.endswith(".py"):
            importlib.import_module(plugin)
            return
        file = (base / plugin).resolve()
        name = f"podium_plugin_{file.stem}"
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or not file.is_file():
            raise ImportError(f"no such file {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except ImportError as e:
        raise ConfigError(f"{where}: cannot import {plugin!r} ({e})") from None


def _load_yaml(path: Path):
    """The recipe file as an OmegaConf mapping; a parse error names the file, line and column."""
    if not path.is_file():
        raise ConfigError(f"{path}: recipe file not found")
    try:
        cfg = OmegaConf.load(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: cannot parse the recipe as YAML ({problem})") from None
    except (OmegaConfBaseException, ValueError, OSError) as e:
        raise ConfigError(f"{path}: cannot read the recipe ({e})") from None
    if not OmegaConf.is_dict(cfg):
        raise ConfigError(f"{path}: expected a mapping at the top of the recipe (name:, stages:, ...); "
                          f"found a {'list' if OmegaConf.is_list(cfg) else type(cfg).__name__}")
    return cfg


def _apply_dotlist(cfg, items: Sequence[str], where: str):
    """Apply ``key=value`` items. A mapping merges into a mapping (a profile can change one trainer field);
    anything else replaces (a list of sweep members replaces a grid of them)."""
    for item in items:
        if "=" not in item:
            raise ConfigError(f"{where}: override {item!r} is not of the form key=value")
        key, _, value = item.partition("=")
        try:
            parsed = OmegaConf.from_dotlist([f"_={value}"])["_"]
            existing = OmegaConf.select(cfg, key.strip(), default=None)
            merge = not (OmegaConf.is_dict(existing) and not OmegaConf.is_dict(parsed))
            OmegaConf.update(cfg, key.strip(), parsed, merge=merge, force_add=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{where}: cannot apply override {item!r} ({e})") from None
    return cfg


def _apply_profile(cfg, profile: str | None, source: str):
    profiles = cfg.get("profiles") or {}
    if profile is None:
        return cfg
    if profile not in profiles:
        raise ConfigError(f"{source}: profiles.{profile}: no such profile{_suggest(profile, list(profiles))}"
                          f" (profiles: {', '.join(profiles) or 'none'})")
    items = [f"{k}={_yaml_scalar(v)}" for k, v in profiles[profile].items()]
    return _apply_dotlist(cfg, items, f"{source}: profiles.{profile}")


def _expand_members(raw: dict[str, Any], path: str) -> list[dict[str, Any]]:
    """``members:`` -> one raw config per member. A list of override maps, or a map of value lists
    expanded as a Cartesian product in the order the keys are written."""
    members = raw.pop("members", None)
    if members is None:
        return [raw]
    if isinstance(members, dict):
        keys = list(members)
        for k in keys:
            if not isinstance(members[k], list) or not members[k]:
                raise ConfigError(f"{path}.members.{k}: expected a non-empty list of values; "
                                  f"found {members[k]!r}")
        overrides = [dict(zip(keys, combo, strict=True)) for combo in product(*(members[k] for k in keys))]
    elif isinstance(members, list) and all(isinstance(m, dict) for m in members) and members:
        overrides = members
    else:
        raise ConfigError(f"{path}.members: expected a list of override maps or a map of value lists; "
                          f"found {members!r}")
    out = []
    for i, ov in enumerate(overrides):
        cfg = OmegaConf.create(raw)
        _apply_dotlist(cfg, [f"{k}={_yaml_scalar(v)}" for k, v in ov.items()], f"{path}.members[{i}]")
        out.append(OmegaConf.to_container(cfg, resolve=True))
    return out


def _yaml_scalar(value: Any) -> str:
    """A value as dotlist text (flow style, so lists and maps stay on one line)."""
    if isinstance(value, str):
        return value
    import yaml

    return yaml.safe_dump(OmegaConf.to_container(OmegaConf.create({"v": value}))["v"],
                          default_flow_style=True).strip().removesuffix("\n...").strip()


def stage_model(kind: str, task: str | None, path: str) -> type[StageConfig]:
    kinds = stage_kinds()
    if kind not in kinds:
        raise ConfigError(f"{path}.kind: unknown stage kind {kind!r}{_suggest(kind, list(kinds))} "
                          f"(kinds: {', '.join(sorted(kinds))})")
    base = kinds[kind].config
    if task is None:
        return base
    return get_task(task, path=f"{path}.task").stage_config(kind) or base


def _check_refs(stages: dict[str, StageNode], broken: Sequence[str]) -> list[str]:
    """Problems with references between stages; ``broken`` stages (reported already) are not looked into."""
    names = [*stages, *broken]
    problems = []
    for node in stages.values():
        for fpath, ref, kinds in node.references:
            where = f"stages.{node.name}.{fpath}"
            if ref.stage in broken:
                continue
            if ref.stage not in stages:
                problems.append(f"{where}: unknown stage {ref.stage!r}{_suggest(ref.stage, names)} "
                                f"(stages: {', '.join(names)})")
                continue
            target = stages[ref.stage]
            if ref.member is not None and ref.member >= len(target.configs):
                problems.append(f"{where}: {ref.stage!r} has {len(target.configs)} member(s); "
                                f"expected an index 0..{len(target.configs) - 1} in {str(ref)!r}")
                continue
            if kinds and target.kind not in kinds:
                problems.append(f"{where}: {ref.stage!r} is a {target.kind} stage; expected a stage of "
                                f"kind {' or '.join(kinds)}")
            elif ref.select == "epoch":
                if target.kind != "train":
                    problems.append(f"{where}: '@epoch=' needs a train stage; {ref.stage!r} is "
                                    f"a {target.kind} stage")
                    continue
                max_epochs = min(c.trainer.max_epochs for c in target.configs)
                if ref.epoch > max_epochs:
                    problems.append(f"{where}: '@epoch={ref.epoch}' is past the end of {ref.stage!r} "
                                    f"(trainer.max_epochs = {max_epochs}); expected 1..{max_epochs}")
        for dep in node.needs:
            if dep not in stages and dep not in broken:
                problems.append(f"stages.{node.name}.needs: unknown stage {dep!r}{_suggest(dep, names)} "
                                f"(stages: {', '.join(names)})")
    return problems


def _add_data_dependencies(nodes: dict[str, StageNode]) -> None:
    """Stages that read the data set depend on the stage that makes it (so its hash is theirs too)."""
    synths = [n for n, node in nodes.items() if node.kind == "synth"]
    for node in nodes.values():
        if node.kind != "synth" and stage_kind(node.kind).uses_data:
            node.needs = list(dict.fromkeys([*synths, *node.needs]))


def _topological_order(stages: dict[str, StageNode]) -> list[str]:
    """Kahn's algorithm; among ready stages, recipe order wins (stable, no set iteration)."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = trail[trail.index(name):] + [name]
            raise ConfigError(f"stages.{name}.needs: dependency cycle {' -> '.join(cycle)}")
        state[name] = "visiting"
        for dep in stages[name].needs:
            visit(dep, [*trail, name])
        state[name] = "done"
        order.append(name)

    for name in stages:
        visit(name, [])
    return order


def _stage_node(name: str, sraw: Any, default_task: str | None) -> StageNode:
    """One stage's validated configs (one per sweep member) and references; all its problems at once."""
    where = f"stages.{name}"
    if not isinstance(sraw, dict) or "kind" not in sraw:
        raise ConfigError(f"{where}.kind: required key is missing (every stage names its kind)")
    task = sraw.get("task", default_task)
    model = stage_model(sraw["kind"], task, where)
    members = _expand_members(dict(sraw), where) if sraw["kind"] == "train" else [dict(sraw)]
    configs, problems = [], []
    for i, m in enumerate(members):
        prefix = f"{where}.members[{i}]" if len(members) > 1 else where
        try:
            cfg = validate(model, {**m, "task": task}, prefix)
        except ConfigError as e:
            problems.append(str(e))
            continue
        for fname, kind, data in cfg.nested():
            try:
                validate(stage_model(kind, task, f"{prefix}.{fname}"), {**data, "kind": kind, "task": task},
                         f"{prefix}.{fname}")
            except ConfigError as e:
                problems.append(str(e))
        configs.append(cfg)
    if problems:
        raise ConfigError("\n".join(_shared_by_members(problems, len(members))))
    refs = [(f, Ref.parse(text, f"{where}.{f}"), kinds) for f, text, kinds in configs[0].references()]
    needs = list(dict.fromkeys([*configs[0].needs, *(r.stage for _, r, _ in refs)]))
    return StageNode(name, configs[0].kind, task, configs, needs, refs)


def _shared_by_members(problems: list[str], count: int) -> list[str]:
    """A problem every member of a sweep has (one in the stage's own config) is reported once, without
    a member index; one that only some members have keeps theirs."""
    lines = [line for problem in problems for line in problem.splitlines()]
    plain = [re.sub(r"\.members\[\d+\]", "", line) for line in lines]
    out = []
    for line, base in zip(lines, plain, strict=True):
        shared = count > 1 and plain.count(base) == count
        if (base if shared else line) not in out:
            out.append(base if shared else line)
    return out


def load_recipe(path: str | Path, profile: str | None = None, overrides: Sequence[str] = ()) -> Recipe:
    """Load, apply ``profile`` then ``overrides`` (dotlist), validate, and order the stages."""
    path = Path(path)
    token = _RECIPE_DIR.set(path.parent.absolute())
    try:
        cfg = _load_yaml(path)
        cfg = _apply_profile(cfg, profile, str(path))
        cfg = _apply_dotlist(cfg, list(overrides), "command line")
        raw = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: cannot resolve an interpolation ({e})") from None
    finally:
        _RECIPE_DIR.reset(token)
    raw.pop("profiles", None)
    top = validate(_RecipeTop, raw, "")
    _import_plugin(BUILTINS, path.parent, "podium's built-in stage kinds and tasks")
    for i, plugin in enumerate(top.plugins):
        _import_plugin(plugin, path.parent, f"plugins[{i}]")
    if top.task is not None:
        get_task(top.task, "task")
    problems: list[str] = []
    data_root = top.data.get("root")
    problems += [f"data.{k}: unknown key (allowed here: root)" for k in top.data if k != "root"]
    if data_root is not None and not Path(data_root).is_dir():
        problems.append(f"data.root: {data_root}: no such directory")
    if not top.stages:
        raise ConfigError(f"{path}: stages: the recipe has no stages (expected a mapping of stage names "
                          "to {kind: ..., ...})")

    nodes: dict[str, StageNode] = {}
    for name, sraw in top.stages.items():
        try:
            nodes[name] = _stage_node(name, sraw, top.task)
        except ConfigError as e:
            problems.append(str(e))
    broken = [n for n in top.stages if n not in nodes]
    _add_data_dependencies(nodes)
    problems += _check_refs(nodes, broken)
    if problems:
        raise ConfigError("\n".join(problems))
    order = _topological_order(nodes)
    return Recipe(top.name, top.task, top.seed, data_root, nodes, order, path, profile, raw)
