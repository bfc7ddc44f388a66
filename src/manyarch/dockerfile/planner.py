"""Plan a build: expand a parsed Dockerfile for one platform into stages and steps.

This follows BuildKit's ``dockerfile2llb`` (``convert.go``): global ARGs
(with the automatic platform ARGs) expand FROM lines; inside a stage,
variables come from the base image's Env, ENV and the stage's ARGs, in
order, the last one set winning (so an ``ENV`` after an ``ARG`` of the same
name shadows it, as Docker documents). ``ARG NAME`` without a value in a
stage takes the global value; ``--build-arg`` values win over defaults.
ARG values reach RUN as environment variables but are not kept in the image.

The planner does no I/O. What it cannot know — the base image's config
(Env for ``WORKDIR $HOME``, WorkingDir for relative WORKDIRs and COPY
destinations, Shell for shell forms) — comes from the ``base_config``
callback the executor passes (it resolves the image); without it a base
image is taken to have an empty config.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from manyarch.dockerfile.contexts import LOCAL, named_source, platform_args
from manyarch.dockerfile.heredocs import copy_sources as heredoc_sources
from manyarch.dockerfile.heredocs import run_script
from manyarch.dockerfile.lex import ShellLex, ShellLexError
from manyarch.dockerfile.mounts import Mount, MountError, plan_mounts, raw_from
from manyarch.dockerfile.onbuild import trigger_instructions
from manyarch.dockerfile.sources import source_problem, unpack_archives
from manyarch.dockerfile.steps import (
    DEFAULT_SHELL,
    BuildPlan,
    ConfigStep,
    CopyStep,
    RunStep,
    Stage,
    Step,
    stage_base_config,
)
from manyarch.dockerfile.syntax import Dockerfile, Instruction, StageSource
from manyarch.dockerfile.values import (
    go_clean,
    parse_duration,
    parse_port_spec,
    resolve_dest,
    valid_chmod,
    valid_signal,
)
from manyarch.errors import DockerfileError, InvalidInput
from manyarch.oci import ContainerConfig, Platform, parse_any

BaseConfig = Callable[[str, Platform], ContainerConfig]

#: Build args BuildKit reads itself; accepted and ignored without a warning.
IGNORED_BUILD_ARGS = frozenset(
    {
        "BUILDKIT_INLINE_CACHE",
        "BUILDKIT_MULTI_PLATFORM",
        "BUILDKIT_SYNTAX",
        "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
        "BUILDKIT_SANDBOX_HOSTNAME",
    }
)
#: Predefined build args: usable without an ARG, passed to RUN, never kept in the image.
PROXY_BUILD_ARGS = frozenset(
    {"HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
     "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"}
)  # fmt: skip
# ARGs BuildKit does not turn into environment variables.
_NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})
_NETWORKS = ("default", "none", "host")
_INT = re.compile(r"^[+-]?\d+$")


@dataclass
class _State:
    """What a stage has built up so far (copied when another stage builds FROM it)."""

    config: ContainerConfig
    env: dict[str, str]
    args: list[str]  # ARG names with a value: passed to RUN
    platform: Platform
    cmd_set: bool = False
    steps: list[Step] = field(default_factory=list)
    triggers: tuple[str, ...] = ()  # the base's ONBUILD, run first


class _Planner:
    def __init__(
        self,
        df: Dockerfile,
        target_platform: Platform,
        build_platform: Platform,
        build_args: Mapping[str, str],
        base_config: BaseConfig | None,
        contexts: Mapping[str, str],
    ) -> None:
        self.df = df
        self.file = df.file
        self.lex = ShellLex(escape=df.escape)
        self.target_platform = target_platform
        self.build_args = dict(build_args)
        self.base_config = base_config
        self.global_env = platform_args(target_platform, build_platform)
        self.declared: set[str] = set()
        self.contexts = contexts
        #: each RUN's --mount from= values, resolved (None: the context, or no from)
        self.mount_sources: dict[tuple[int, int], list[str | None]] = {}
        self.stage_index = 0

    # -- helpers --------------------------------------------------------------

    def error(self, message: str, line: int | None, hint: str | None = None) -> DockerfileError:
        return DockerfileError(message, file=self.file, line=line, hint=hint)

    def expand(self, word: str, env: Mapping[str, str], line: int) -> str:
        try:
            return self.lex.process_word(word, env)
        except ShellLexError as e:
            raise self.error(e.message, line) from e

    def expand_words(self, word: str, env: Mapping[str, str], line: int) -> list[str]:
        try:
            return self.lex.process_words(word, env)
        except ShellLexError as e:
            raise self.error(e.message, line) from e

    @staticmethod
    def arg_pairs(ins: Instruction) -> list[tuple[str, str | None]]:
        out: list[tuple[str, str | None]] = []
        for arg in ins.args:
            key, eq, value = arg.partition("=")
            out.append((key, value if eq else None))
        return out

    # -- global scope ---------------------------------------------------------

    def global_args(self) -> None:
        for ins in self.df.global_args:
            for key, value in self.arg_pairs(ins):
                self.declared.add(key)
                if key in self.build_args:
                    self.global_env[key] = self.build_args[key]
                elif value is not None:
                    self.global_env[key] = self.expand(value, self.global_env, ins.line)

    def resolve_from(self, st: StageSource) -> tuple[str, Platform | None]:
        base = self.expand(st.base, self.global_env, st.line)
        if not base:
            raise self.error(
                f"base name ({st.base}) should not be blank", st.line,
                "give the ARG a default or pass it as a build argument",
            )  # fmt: skip
        platform: Platform | None = None
        if st.platform is not None:
            text = self.expand(st.platform, self.global_env, st.line)
            if not text:
                raise self.error(f"empty platform value from expression {st.platform}", st.line)
            try:
                platform = Platform.parse(text)
            except InvalidInput as e:
                raise self.error(f"FROM --platform: {e.message}", st.line, e.hint) from e
        named = named_source(base, self.contexts)
        if named is not None and named.startswith(LOCAL):
            raise self.error(f"FROM {base}: a local directory as a base is not supported", st.line)
        if named is not None:
            return named, platform
        for earlier in self.df.stages[: st.index]:
            if earlier.name is not None and earlier.name == base:
                return f"stage:{earlier.index}", platform
        if base != "scratch":
            self.check_reference(base, st.line, "FROM")
        return base, platform

    def check_reference(self, ref: str, line: int, what: str) -> None:
        try:
            # an OCI layout on disk is a base too (buildx spells it oci-layout://)
            parse_any(ref)
        except InvalidInput as e:
            raise self.error(f"{what} {ref!r} is not a valid image reference: {e.message}",
                             line, e.hint) from e  # fmt: skip

    def copy_from(self, value: str, st: StageSource, line: int) -> str:
        """``"stage:<i>"`` or an image reference for ``COPY --from=value``."""
        if self.lex.process_word(value, {}) != value:
            raise self.error(
                "variable expansion is not supported for --from", line,
                "define a new stage with FROM using an ARG from the global scope instead",
            )  # fmt: skip
        source: StageSource | None = None
        if (named := named_source(value, self.contexts)) is not None:
            return named
        if _INT.match(value):
            idx = int(value)
            if idx < 0 or idx >= len(self.df.stages):
                raise self.error(
                    f"invalid stage index {idx} in --from", line,
                    f"the Dockerfile has stages 0 to {len(self.df.stages) - 1}",
                )  # fmt: skip
            source = self.df.stages[idx]
        else:
            source = self.df.stage_named(value)
        if source is None:
            self.check_reference(value, line, "COPY --from")
            return value
        if source.index >= st.index:
            raise self.error(
                f"cannot copy from stage {value!r}, it needs to be defined before current "
                f"stage {st.name or st.index!r}",
                line,
            )
        return f"stage:{source.index}"

    # -- stages ---------------------------------------------------------------

    def plan(self, target: str | None) -> BuildPlan:
        self.global_args()
        froms = [self.resolve_from(st) for st in self.df.stages]
        deps: dict[int, set[int]] = {}
        sources: dict[tuple[int, int], str] = {}
        for st, (base, _) in zip(self.df.stages, froms, strict=True):
            needs: set[int] = set()
            if base.startswith("stage:"):
                needs.add(int(base[6:]))
            for ins in st.instructions:
                value = ins.flag("from") if ins.cmd == "COPY" else None
                if value is not None:
                    src = self.copy_from(value, st, ins.line)
                    sources[(st.index, ins.line)] = src
                    if src.startswith("stage:"):
                        needs.add(int(src[6:]))
                if ins.cmd == "RUN":
                    mfroms = self.mount_froms(ins, st)
                    self.mount_sources[(st.index, ins.line)] = mfroms
                    needs.update(int(f[6:]) for f in mfroms if f and f.startswith("stage:"))
            deps[st.index] = needs

        if target is None:
            goal = self.df.stages[-1]
        else:
            found = self.df.stage_named(target)
            if found is None:
                names = [s.name for s in self.df.stages if s.name]
                raise self.error(
                    f"target stage {target!r} could not be found", None,
                    "stages: " + (", ".join(names) if names else "none has a name"),
                )  # fmt: skip
            goal = found
        wanted: set[int] = set()
        todo = [goal.index]
        while todo:
            i = todo.pop()
            if i not in wanted:
                wanted.add(i)
                todo.extend(deps[i])

        states: dict[int, _State] = {}
        stages: list[Stage] = []
        for st in self.df.stages:
            if st.index not in wanted:
                continue
            base, platform = froms[st.index]
            state = self.initial_state(base, platform, states)
            self.stage_index = st.index
            for ins in trigger_instructions(state.triggers, st.line, self.file):
                self.mount_sources[(st.index, ins.line)] = self.mount_froms(ins, st)
                from_ = ins.flag("from") if ins.cmd == "COPY" else None
                self.instruction(ins, st, state, from_ and self.copy_from(from_, st, ins.line))
            for ins in st.instructions:
                self.instruction(ins, st, state, sources.get((st.index, ins.line)))
            states[st.index] = state
            stages.append(
                Stage(
                    index=st.index,
                    name=st.name,
                    base=base,
                    platform=state.platform,
                    steps=tuple(state.steps),
                    line=st.line,
                )
            )
        unused = sorted(
            k
            for k in self.build_args
            if k not in self.declared and k not in IGNORED_BUILD_ARGS and k not in PROXY_BUILD_ARGS
        )
        return BuildPlan(tuple(stages), tuple(unused))

    def initial_state(
        self, base: str, platform: Platform | None, states: Mapping[int, _State]
    ) -> _State:
        if base.startswith("stage:"):
            parent = states[int(base[6:])]
            return _State(
                config=stage_base_config(parent.config),
                env=dict(parent.env),
                args=list(parent.args),
                platform=parent.platform,
                triggers=parent.config.on_build or (),
            )
        plat = platform or self.target_platform
        if base == "scratch" or self.base_config is None:
            config = ContainerConfig(working_dir="/" if base == "scratch" else "")
        else:
            config = self.base_config(base, plat)
        triggers, config = config.on_build or (), stage_base_config(config)
        return _State(config, config.env_dict(), [], plat, triggers=triggers)

    # -- instructions ---------------------------------------------------------

    def instruction(
        self, ins: Instruction, st: StageSource, state: _State, source: str | None
    ) -> None:
        handler = getattr(self, "do_" + ins.cmd.lower())
        step: Step | None
        step = handler(ins, state, source) if ins.cmd == "COPY" else handler(ins, state)
        if step is None:
            return
        if isinstance(step, ConfigStep):
            state.config = step.apply(state.config)
        state.steps.append(step)

    def shell(self, state: _State) -> tuple[str, ...]:
        return state.config.shell or DEFAULT_SHELL

    def do_arg(self, ins: Instruction, state: _State) -> Step | None:
        for key, default in self.arg_pairs(ins):
            self.declared.add(key)
            value: str | None
            if key in self.build_args:
                value = self.build_args[key]
            elif default is not None:
                value = self.expand(default, state.env, ins.line)
            else:
                value = self.global_env.get(key)
            if value is not None and key not in _NON_ENV_ARGS:
                state.env[key] = value
                if key not in state.args:
                    state.args.append(key)
        return None

    def kv_pairs(self, ins: Instruction, state: _State) -> tuple[tuple[str, str], ...]:
        # All pairs expand against the variables as they were before the instruction.
        env = dict(state.env)
        return tuple(
            (self.expand(k, env, ins.line), self.expand(v, env, ins.line))
            for k, v in zip(ins.args[::2], ins.args[1::2], strict=True)
        )

    def do_env(self, ins: Instruction, state: _State) -> Step:
        pairs = self.kv_pairs(ins, state)
        for k, _ in pairs:
            if not k:
                raise self.error("ENV names can not be blank", ins.line)
        state.env.update(pairs)
        return ConfigStep(ins.line, ins.text, env=pairs)

    def do_label(self, ins: Instruction, state: _State) -> Step:
        return ConfigStep(ins.line, ins.text, labels=self.kv_pairs(ins, state))

    def do_onbuild(self, ins: Instruction, state: _State) -> Step:
        return ConfigStep(ins.line, ins.text, on_build=ins.args[0])

    def do_maintainer(self, ins: Instruction, state: _State) -> Step:
        return ConfigStep(ins.line, ins.text, author=ins.args[0])

    def do_workdir(self, ins: Instruction, state: _State) -> Step:
        path = self.expand(ins.args[0], state.env, ins.line)
        if not path:
            raise self.error("WORKDIR is empty after expansion", ins.line)
        wd = go_clean(path)
        if not wd.startswith("/"):
            wd = go_clean("/" + state.config.working_dir + "/" + wd)
        return ConfigStep(ins.line, ins.text, working_dir=wd, mkdir=wd != "/")

    def do_user(self, ins: Instruction, state: _State) -> Step:
        return ConfigStep(ins.line, ins.text, user=self.expand(ins.args[0], state.env, ins.line))

    def do_expose(self, ins: Instruction, state: _State) -> Step:
        ports: list[str] = []
        for arg in ins.args:
            for word in self.expand_words(arg, state.env, ins.line):
                try:
                    ports.extend(parse_port_spec(word))
                except ValueError as e:
                    raise self.error(f"EXPOSE {word}: {e}", ins.line) from e
        return ConfigStep(ins.line, ins.text, exposed_ports=tuple(sorted(set(ports))))

    def do_volume(self, ins: Instruction, state: _State) -> Step:
        vols = []
        for arg in ins.args:
            v = self.expand(arg.strip(), state.env, ins.line)
            if not v:
                raise self.error("VOLUME specified can not be an empty string", ins.line)
            vols.append(v)
        return ConfigStep(ins.line, ins.text, volumes=tuple(vols))

    def do_stopsignal(self, ins: Instruction, state: _State) -> Step:
        sig = self.expand(ins.args[0], state.env, ins.line)
        if not valid_signal(sig):
            raise self.error(f"invalid signal: {sig}", ins.line, "say for instance SIGTERM or 15")
        return ConfigStep(ins.line, ins.text, stop_signal=sig)

    def do_shell(self, ins: Instruction, state: _State) -> Step:
        return ConfigStep(ins.line, ins.text, shell=ins.args)

    def command(self, ins: Instruction, state: _State) -> tuple[str, ...]:
        if ins.json:
            return ins.args
        return (*self.shell(state), " ".join(ins.args))

    def do_cmd(self, ins: Instruction, state: _State) -> Step:
        state.cmd_set = True
        return ConfigStep(ins.line, ins.text, set_cmd=True, cmd=self.command(ins, state))

    def do_entrypoint(self, ins: Instruction, state: _State) -> Step:
        argv: tuple[str, ...] | None = self.command(ins, state)
        if ins.json and not ins.args:
            argv = None
        return ConfigStep(
            ins.line, ins.text, set_entrypoint=True, entrypoint=argv, reset_cmd=not state.cmd_set
        )

    def do_healthcheck(self, ins: Instruction, state: _State) -> Step:
        kind = ins.args[0].upper()
        rest = ins.args[1:]
        if kind == "NONE":
            if rest or ins.flags:
                raise self.error("HEALTHCHECK NONE takes no arguments or flags", ins.line)
            return ConfigStep(ins.line, ins.text, healthcheck={"Test": ["NONE"]})
        if kind != "CMD":
            raise self.error(f"unknown type {kind!r} in HEALTHCHECK (try CMD)", ins.line)
        if not rest or not any(rest):
            raise self.error("missing command after HEALTHCHECK CMD", ins.line)
        test = ["CMD", *rest] if ins.json else ["CMD-SHELL", " ".join(rest)]
        health: dict[str, Any] = {"Test": test}
        for flag, key in (
            ("interval", "Interval"),
            ("timeout", "Timeout"),
            ("start-period", "StartPeriod"),
            ("start-interval", "StartInterval"),
        ):
            value = ins.flag(flag)
            if value:
                try:
                    ns = parse_duration(value)
                except ValueError as e:
                    raise self.error(f"HEALTHCHECK --{flag}: {e}", ins.line) from e
                if 0 < ns < 1_000_000:
                    raise self.error(f"HEALTHCHECK --{flag} cannot be less than 1ms", ins.line)
                if ns:
                    health[key] = ns
        retries = ins.flag("retries")
        if retries:
            if not _INT.match(retries):
                raise self.error(f"HEALTHCHECK --retries: invalid number {retries!r}", ins.line)
            if int(retries) < 0:
                raise self.error(f"--retries cannot be negative ({retries})", ins.line)
            if int(retries):
                health["Retries"] = int(retries)
        return ConfigStep(ins.line, ins.text, healthcheck=health)

    def mount_froms(self, ins: Instruction, st: StageSource) -> list[str | None]:
        out: list[str | None] = []
        for k, v in ins.flags:
            if k == "mount":
                raw = raw_from(v)
                out.append(self.copy_from(raw, st, ins.line) if raw else None)
        return out

    def mounts(self, ins: Instruction, state: _State) -> tuple[Mount, ...]:
        froms = self.mount_sources.get((self.stage_index, ins.line), [])
        values = [v for k, v in ins.flags if k == "mount"]
        try:
            return plan_mounts(values, froms, lambda w: self.expand(w, state.env, ins.line),
                               state.config.working_dir)  # fmt: skip
        except MountError as e:
            raise self.error(f"RUN --mount: {e}", ins.line) from e

    def do_run(self, ins: Instruction, state: _State) -> Step:
        network = ins.flag("network") or "default"
        if network not in _NETWORKS:
            raise self.error(
                f"RUN --network={network} is not supported", ins.line,
                "use --network=default, none or host",
            )  # fmt: skip
        security = ins.flag("security") or "sandbox"
        if security not in ("sandbox", "insecure"):
            raise self.error(
                f"RUN --security={security} is not supported", ins.line, "use sandbox or insecure"
            )
        files: tuple[tuple[str, str], ...] = ()
        if ins.json:
            argv, command_text = ins.args, " ".join(ins.args)
        else:
            command_text = " ".join(ins.args)
            if ins.heredocs:
                command_text, files = run_script(ins)
            argv = (*self.shell(state), command_text)
        env = [(k, state.env[k]) for k in state.args if k in state.env]
        proxies: dict[str, str] = {}  # both spellings, the lower-case one winning (BuildKit)
        for k in sorted(PROXY_BUILD_ARGS & self.build_args.keys()):
            proxies.update({k.upper(): self.build_args[k], k.lower(): self.build_args[k]})
        env += [(k, v) for k, v in proxies.items() if k not in state.args]
        return RunStep(
            ins.line,
            ins.text,
            argv=tuple(argv),
            shell_form=not ins.json,
            command_text=command_text,
            env=tuple(env),
            network=network,
            mounts=self.mounts(ins, state),
            security=security,
            files=files,
        )

    def do_copy(self, ins: Instruction, state: _State, source: str | None) -> Step:
        return self.copy(ins, state, source, is_add=False)

    def do_add(self, ins: Instruction, state: _State) -> Step:
        return self.copy(ins, state, None, is_add=True)

    def copy(self, ins: Instruction, state: _State, source: str | None, *, is_add: bool) -> Step:
        env = state.env
        raw = ShellLex(skip_process_quotes=True)
        try:
            args, inline = heredoc_sources(ins, lambda d: raw.process_word(d, env))
        except (ValueError, ShellLexError) as e:
            raise self.error(f"{ins.cmd}: {e}", ins.line) from e
        words = [self.expand(a, env, ins.line) for a in args]
        sources, dest = words[:-1], words[-1]
        checksum, parents = ins.flag("checksum"), ins.flag("parents") == "true"
        problem = source_problem(ins.cmd, sources, checksum, parents)
        if problem is not None:
            raise self.error(problem[0], ins.line, problem[1])
        chown = ins.flag("chown")
        chmod = ins.flag("chmod")
        if chown is not None:
            chown = self.expand(chown, env, ins.line)
        if chmod is not None:
            chmod = self.expand(chmod, env, ins.line)
            if not valid_chmod(chmod):
                raise self.error(
                    f"{ins.cmd} --chmod={chmod}: invalid mode", ins.line,
                    "write it in octal (755) or as chmod does (u+x,go-w)",
                )  # fmt: skip
        if len(sources) + len(inline) > 1 and not dest.endswith("/"):
            raise self.error(
                f"when using {ins.cmd} with more than one source file, the destination must be "
                "a directory and end with a /",
                ins.line,
            )
        return CopyStep(
            ins.line,
            ins.text,
            sources=tuple(sources),
            dest=resolve_dest(state.config.working_dir, dest),
            from_=source,
            chown=chown or None,
            chmod=chmod or None,
            link=ins.flag("link") == "true",
            is_add=is_add,
            extract_tar=unpack_archives(is_add, ins.flag("unpack"), sources),
            inline=tuple(inline),
            checksum=checksum,
            excludes=tuple(self.expand(v, env, ins.line) for k, v in ins.flags if k == "exclude"),
            parents=parents,
            keep_git_dir=ins.flag("keep-git-dir") == "true",
        )


def plan(
    df: Dockerfile,
    *,
    target_platform: Platform,
    build_platform: Platform,
    build_args: Mapping[str, str] | None = None,
    target: str | None = None,
    base_config: BaseConfig | None = None,
    contexts: Mapping[str, str] | None = None,
) -> BuildPlan:
    """Plan the build of ``df`` for ``target_platform``: the stages ``target`` needs.

    ``base_config(reference, platform)`` gives a base image's container config
    (Env, WorkingDir, Shell); it is called once per base image stage planned.
    ``contexts``: buildx's ``--build-context`` s (see :mod:`.contexts`).
    """
    planner = _Planner(
        df, target_platform, build_platform, build_args or {}, base_config, contexts or {}
    )
    return planner.plan(target)
