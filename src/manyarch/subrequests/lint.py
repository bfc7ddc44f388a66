"""BuildKit's build checks (``--check``, ``--call check``): its rules, names and words.

The rules of moby/buildkit ``frontend/dockerfile/linter/ruleset.go`` that
real Dockerfiles trip most, each checked as ``dockerfile2llb`` checks it:
casing (FromAsCasing, StageNameCasing, ConsistentInstructionCasing),
JSONArgsRecommended, UndefinedVar and UndefinedArgInFrom (variables are
expanded as BuildKit expands them, a stage seeing its base image's Env),
LegacyKeyValueFormat, WorkdirRelativePath, MultipleInstructionsDisallowed,
MaintainerDeprecated, ReservedStageName, SecretsUsedInArgOrEnv,
RedundantTargetPlatform, FromPlatformFlagConstDisallowed, ExposeProtoCasing,
ExposeInvalidFormat and NoEmptyContinuation. The ``# check=skip=RULE,...``
directive (and ``BUILDKIT_DOCKERFILE_CHECK``) skips rules; ``error=true``
makes warnings fail the build.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from manyarch import dockerfile as df
from manyarch.dockerfile.lex import ShellLex, ShellLexError
from manyarch.oci.platform import Platform

_DOCS = "https://docs.docker.com/go/dockerfile/rule/"
#: rule -> (description, URL slug)
RULES: dict[str, tuple[str, str]] = {
    "StageNameCasing": ("Stage names should be lowercase", "stage-name-casing"),
    "FromAsCasing": (
        "The 'as' keyword should match the case of the 'from' keyword", "from-as-casing"),
    "NoEmptyContinuation": (
        "Empty continuation lines will become errors in a future release", "no-empty-continuation"),
    "ConsistentInstructionCasing": (
        "All commands within the Dockerfile should use the same casing (either upper or lower)",
        "consistent-instruction-casing"),
    "DuplicateStageName": ("Stage names should be unique", "duplicate-stage-name"),
    "ReservedStageName": (
        "Reserved words should not be used as stage names", "reserved-stage-name"),
    "JSONArgsRecommended": (
        "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related "
        "to OS signals", "json-args-recommended"),
    "MaintainerDeprecated": (
        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
        "maintainer-deprecated"),
    "UndefinedArgInFrom": ("FROM command must use declared ARGs", "undefined-arg-in-from"),
    "WorkdirRelativePath": (
        "Relative workdir without an absolute workdir declared within the build can have "
        "unexpected results if the base image changes", "workdir-relative-path"),
    "UndefinedVar": ("Variables should be defined before their use", "undefined-var"),
    "MultipleInstructionsDisallowed": (
        "Multiple instructions of the same type should not be used in the same stage",
        "multiple-instructions-disallowed"),
    "LegacyKeyValueFormat": (
        "Legacy key/value format with whitespace separator should not be used",
        "legacy-key-value-format"),
    "RedundantTargetPlatform": (
        "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the "
        "default behavior", "redundant-target-platform"),
    "SecretsUsedInArgOrEnv": (
        "Sensitive data should not be used in the ARG or ENV commands",
        "secrets-used-in-arg-or-env"),
    "FromPlatformFlagConstDisallowed": (
        "FROM --platform flag should not use a constant value",
        "from-platform-flag-const-disallowed"),
    "ExposeProtoCasing": (
        "Protocol in EXPOSE instruction should be lowercase", "expose-proto-casing"),
    "ExposeInvalidFormat": (
        "IP address and host-port mapping should not be used in EXPOSE instruction. This will "
        "become an error in a future release", "expose-invalid-format"),
}  # fmt: skip
_RESERVED = frozenset({"context", "scratch"})
_SECRET = re.compile(
    r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret|token)(?:_|$)"
)
_ALLOW = re.compile(r"(?i)(?:_|^)(?:public|file|version)(?:_|$)")
_CHECK_DIRECTIVE = re.compile(r"^#\s*check\s*=\s*(.+?)\s*$", re.IGNORECASE)
_DIRECTIVE = re.compile(r"^#\s*[a-zA-Z][a-zA-Z0-9]*\s*=")
#: instructions whose words BuildKit expands itself (RUN, CMD, ... are the shell's)
_EXPANDED = frozenset(
    {"ADD", "COPY", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
)
#: the platform ARGs every FROM line sees without declaring them
_AUTO_ARGS = frozenset(df.platform_args(Platform("linux", "amd64"), Platform("linux", "amd64")))
#: (ref as written after expansion) -> the base image's Env, or None when unknown
BaseEnv = Callable[[str], Mapping[str, str] | None]


@dataclass(frozen=True)
class Warning:
    """One broken rule, where (lines of the Dockerfile)."""

    rule: str
    detail: str
    line: int
    end_line: int

    @property
    def description(self) -> str:
        """The rule's description."""
        return RULES[self.rule][0]

    @property
    def url(self) -> str:
        """The rule's page."""
        return _DOCS + RULES[self.rule][1] + "/"

    def short(self) -> str:
        """``RULE: DETAIL (line N)``, as a build's summary lists it."""
        return f"{self.rule}: {self.detail} (line {self.line})"


@dataclass(frozen=True)
class CheckConfig:
    """``# check=skip=A,B;error=true``: rules skipped, and whether warnings fail."""

    skip: frozenset[str] = frozenset()
    error: bool = False

    @classmethod
    def parse(cls, text: str) -> CheckConfig:
        """The directive's (or ``BUILDKIT_DOCKERFILE_CHECK``'s) value."""
        skip: set[str] = set()
        error = False
        for part in text.split(";"):
            key, _, value = part.strip().partition("=")
            if key.strip() == "skip":
                skip.update(v.strip() for v in value.split(",") if v.strip())
            elif key.strip() == "error":
                error = value.strip().lower() in ("true", "1")
        return cls(frozenset(skip), error)

    @classmethod
    def of(cls, text: str, build_args: Mapping[str, str]) -> CheckConfig:
        """From the Dockerfile's directive, or the build arg (which wins)."""
        if "BUILDKIT_DOCKERFILE_CHECK" in build_args:
            return cls.parse(build_args["BUILDKIT_DOCKERFILE_CHECK"])
        for line in text.splitlines():
            m = _CHECK_DIRECTIVE.match(line)
            if m:
                return cls.parse(m.group(1))
            if not _DIRECTIVE.match(line):
                break
        return cls()


@dataclass
class _Linter:
    text: str
    parsed: df.Dockerfile
    build_args: Mapping[str, str]
    base_env: BaseEnv | None
    out: list[Warning] = field(default_factory=list)

    def add(self, rule: str, detail: str, ins: df.Instruction | df.StageSource) -> None:
        end = ins.end_line if isinstance(ins, df.Instruction) else ins.line
        self.out.append(Warning(rule, detail, ins.line, end))

    def run(self) -> list[Warning]:
        self.casing()
        self.continuation()
        lex = ShellLex(escape=self.parsed.escape)
        global_env, declared = self.global_args(lex)
        envs: dict[str, dict[str, str] | None] = {}
        for stage in self.parsed.stages:
            self.stage_from(stage, lex, global_env, declared)
            env = self.stage_env(stage, lex, global_env, envs)
            self.stage_body(stage, lex, env, global_env)
            if stage.name:
                envs[stage.name] = env
        return sorted(self.out, key=lambda w: (w.line, w.rule))

    def casing(self) -> None:
        words: list[tuple[str, df.Instruction | df.StageSource]]
        words = [(s.text.split()[0], s) for s in self.parsed.stages]
        for s in self.parsed.stages:
            words += [(i.text.split()[0], i) for i in s.instructions]
        words += [(i.text.split()[0], i) for i in self.parsed.global_args]
        lower = sum(1 for w, _ in words if w == w.lower())
        upper = sum(1 for w, _ in words if w == w.upper() and w != w.lower())
        majority_lower = lower > upper
        for w, where in sorted(words, key=lambda t: t[1].line):
            if majority_lower and w.lower() != w:
                self.add("ConsistentInstructionCasing",
                         f"Command '{w}' should match the case of the command majority (lowercase)",
                         where)  # fmt: skip
            elif not majority_lower and w.upper() != w:
                self.add("ConsistentInstructionCasing",
                         f"Command '{w}' should match the case of the command majority (uppercase)",
                         where)  # fmt: skip

    def continuation(self) -> None:
        lines = self.text.splitlines()
        esc = self.parsed.escape
        for ins in [
            *self.parsed.global_args,
            *(i for s in self.parsed.stages for i in s.instructions),
        ]:
            if ins.heredocs:
                continue
            body = lines[ins.line - 1 : ins.end_line]
            if any(not ln.strip() for ln in body[1:-1]) and body and body[0].rstrip().endswith(esc):
                self.add("NoEmptyContinuation", "Empty continuation line", ins)

    def global_args(self, lex: ShellLex) -> tuple[dict[str, str], set[str]]:
        env: dict[str, str] = {}
        declared: set[str] = set()
        for ins in self.parsed.global_args:
            for key, value in _arg_pairs(ins):
                declared.add(key)
                self.secret("ARG", key, ins)
                if key in self.build_args:
                    env[key] = self.build_args[key]
                elif value is not None:
                    env[key] = self.expand(lex, value, env, ins, {*declared}, report=False)
        return env, declared

    def stage_from(
        self, stage: df.StageSource, lex: ShellLex, env: Mapping[str, str], declared: set[str]
    ) -> None:
        words = stage.text.split()
        name = stage.name or ""
        if len(words) >= 4 and words[-2].lower() == "as":
            keyword, as_word, raw_name = words[0], words[-2], words[-1]
            if raw_name != raw_name.lower():
                self.add("StageNameCasing", f"Stage name '{raw_name}' should be lowercase", stage)
            want = as_word.lower() if keyword == keyword.lower() else as_word.upper()
            if keyword in (keyword.lower(), keyword.upper()) and as_word != want:
                msg = f"'{as_word}' and '{keyword}' keywords' casing do not match"
                self.add("FromAsCasing", msg, stage)
        if name in _RESERVED:
            msg = f'Stage name should not use the same name as reserved stage "{name}"'
            self.add("ReservedStageName", msg, stage)
        auto = _AUTO_ARGS
        for word in (stage.base, *([stage.platform] if stage.platform else [])):
            try:
                got = lex.process(word, {**{k: "" for k in auto}, **env})
            except ShellLexError:
                continue
            for var in sorted(got.unmatched - declared - auto):
                hint = _suggest(var, sorted(declared))
                self.add("UndefinedArgInFrom", f"FROM argument '{var}' is not declared"
                         + (f" (did you mean {hint}?)" if hint else ""), stage)  # fmt: skip
        if stage.platform:
            p = stage.platform.strip()
            if p in ("$TARGETPLATFORM", "${TARGETPLATFORM}"):
                self.add("RedundantTargetPlatform",
                         f"Setting platform to predefined {p} in FROM is redundant as this is the "
                         "default behavior", stage)  # fmt: skip
            elif "$" not in p and "/" in p:
                osname, _, arch = p.partition("/")
                if osname not in name and arch.split("/")[0] not in name:
                    msg = f'FROM --platform flag should not use constant value "{p}"'
                    self.add("FromPlatformFlagConstDisallowed", msg, stage)

    def stage_env(
        self,
        stage: df.StageSource,
        lex: ShellLex,
        global_env: Mapping[str, str],
        envs: Mapping[str, Mapping[str, str] | None],
    ) -> dict[str, str] | None:
        try:
            base = lex.process_word(stage.base, global_env)
        except ShellLexError:
            return None
        if base.lower() in envs:
            known = envs[base.lower()]
            return dict(known) if known is not None else None
        if base == "scratch":
            return {"PATH": df.DEFAULT_PATH}
        if self.base_env is None:
            return None
        got = self.base_env(base)
        return None if got is None else {"PATH": df.DEFAULT_PATH, **got}

    def stage_body(
        self,
        stage: df.StageSource,
        lex: ShellLex,
        env: dict[str, str] | None,
        global_env: Mapping[str, str],
    ) -> None:
        seen: dict[str, df.Instruction] = {}
        declared: set[str] = set()
        workdir_set = False
        for ins in stage.instructions:
            cmd = ins.cmd
            if cmd in ("CMD", "ENTRYPOINT", "HEALTHCHECK"):
                if cmd in seen:
                    self.add("MultipleInstructionsDisallowed",
                             f"Multiple {cmd} instructions should not be used in the same stage "
                             "because only the last one will be used", seen[cmd])  # fmt: skip
                seen[cmd] = ins
            if cmd in ("CMD", "ENTRYPOINT") and not ins.json and "SHELL" not in seen:
                self.add("JSONArgsRecommended",
                         f"JSON arguments recommended for {cmd} to prevent unintended behavior "
                         "related to OS signals", ins)  # fmt: skip
            if cmd == "SHELL":
                seen["SHELL"] = ins
            if cmd == "MAINTAINER":
                msg = "Maintainer instruction is deprecated in favor of using label"
                self.add("MaintainerDeprecated", msg, ins)
            if cmd in ("ENV", "LABEL") and _legacy_key_value(ins):
                self.add("LegacyKeyValueFormat",
                         f'"{cmd} key=value" should be used instead of legacy "{cmd} key value" '
                         "format", ins)  # fmt: skip
            if cmd == "EXPOSE":
                self.expose(ins)
            if cmd == "ARG":
                for key, value in _arg_pairs(ins):
                    declared.add(key)
                    self.secret("ARG", key, ins)
                    if env is not None:
                        if key in self.build_args:
                            env[key] = self.build_args[key]
                        elif value is not None:
                            env[key] = self.expand(lex, value, env, ins, declared)
                        elif key in global_env:
                            env[key] = global_env[key]
                continue
            if cmd in _EXPANDED and env is not None:
                words = [v for _, v in ins.flags if v] + list(ins.args)
                expanded = [self.expand(lex, w, env, ins, declared) for w in words]
                if cmd == "ENV":
                    for i in range(0, len(ins.args) - 1, 2):
                        self.secret("ENV", ins.args[i], ins)
                        env[ins.args[i]] = expanded[len(ins.flags) + i + 1]
                if cmd == "WORKDIR" and not workdir_set:
                    workdir_set = True
                    if not expanded[-1].startswith("/"):
                        self.add("WorkdirRelativePath",
                                 f'Relative workdir "{expanded[-1]}" can have unexpected results '
                                 "if the base image changes", ins)  # fmt: skip

    def expand(
        self,
        lex: ShellLex,
        word: str,
        env: Mapping[str, str],
        ins: df.Instruction,
        declared: set[str],
        *,
        report: bool = True,
    ) -> str:
        try:
            got = lex.process(word, env)
        except ShellLexError:
            return word
        if report:
            for var in sorted(got.unmatched - declared - {"BUILDKIT_SBOM_SCAN_CONTEXT",
                                                          "BUILDKIT_SBOM_SCAN_STAGE"}):  # fmt: skip
                hint = _suggest(var, sorted(env))
                self.add("UndefinedVar", f"Usage of undefined variable '${var}'"
                         + (f" (did you mean ${hint}?)" if hint else ""), ins)  # fmt: skip
        return got.result

    def secret(self, instruction: str, key: str, ins: df.Instruction) -> None:
        if _SECRET.search(key) and not _ALLOW.search(key):
            msg = f'Do not use ARG or ENV instructions for sensitive data ({instruction} "{key}")'
            self.add("SecretsUsedInArgOrEnv", msg, ins)

    def expose(self, ins: df.Instruction) -> None:
        for raw in ins.args:
            if raw.count(":") >= 1:
                self.add("ExposeInvalidFormat",
                         "EXPOSE instruction should not define an IP address or host-port mapping, "
                         f"found '{raw}'", ins)  # fmt: skip
            _, slash, proto = raw.partition("/")
            if slash and proto != proto.lower():
                msg = f"Defined protocol '{raw}' in EXPOSE instruction should be lowercase"
                self.add("ExposeProtoCasing", msg, ins)


def _arg_pairs(ins: df.Instruction) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for arg in ins.args:
        key, eq, value = arg.partition("=")
        out.append((key, value if eq else None))
    return out


def _legacy_key_value(ins: df.Instruction) -> bool:
    words = ins.text.split(None, 1)
    rest = words[1].lstrip() if len(words) > 1 else ""
    while rest.startswith("--"):
        rest = rest.split(None, 1)[1] if " " in rest else ""
    first = rest.split(None, 1)[0] if rest else ""
    return bool(first) and "=" not in first


def _levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _suggest(value: str, options: Sequence[str]) -> str:
    """BuildKit's ``suggest.Search`` (case-sensitive): the option closest under distance 3."""
    match, best = "", 3
    for opt in options:
        if opt == value:
            return ""
        d = _levenshtein(value, opt)
        if d < best:
            match, best = opt, d
    return match


def lint(
    text: str,
    *,
    file: str = "Dockerfile",
    build_args: Mapping[str, str] | None = None,
    base_env: BaseEnv | None = None,
) -> tuple[list[Warning], CheckConfig]:
    """The rules a Dockerfile breaks (those not skipped), and its check configuration.

    ``base_env`` gives a base image's Env (UndefinedVar is not checked in a stage
    whose base is unknown).
    """
    parsed = df.parse(text, file=file)
    args = dict(build_args or {})
    config = CheckConfig.of(text, args)
    found = _Linter(text, parsed, args, base_env).run()
    skip = config.skip
    kept = [w for w in found if "all" not in skip and w.rule not in skip]
    return kept, config


def results_json(warnings: Sequence[Warning], file: str, text: str) -> dict[str, Any]:
    """BuildKit's ``LintResults`` (``--call check,format=json``)."""
    return {
        "warnings": [
            {
                "ruleName": w.rule,
                "description": w.description,
                "url": w.url,
                "detail": w.detail,
                "location": {"ranges": [{"start": {"line": w.line}, "end": {"line": w.end_line}}]},
            }
            for w in warnings
        ],
        "sources": [
            {
                "filename": file,
                "language": "Dockerfile",
                "data": base64.b64encode(text.encode()).decode(),
            }
        ],
    }


def source_lines(text: str, file: str, start: int, end: int) -> str:
    """BuildKit's ``errdefs.Source.Print``: the lines around a range, ``>>>`` on its own."""
    lines = text.split("\n")
    if start < 1 or start > len(lines):
        return ""
    end = min(end, len(lines))
    marked = range(start, max(start, end) + 1)
    pad = 4 if end == start else 2
    first, p = start, 0
    while p < pad:
        if start > 1:
            start -= 1
            p += 1
        if end != len(lines):
            end += 1
            p += 1
        p += 1
    out = [f"{file}:{first}", "--------------------"]
    for i in range(start, end + 1):
        mark = ">>>" if i in marked else "   "
        out.append(f" {i:3d} | {mark} {lines[i - 1]}")
    out.append("--------------------")
    return "\n".join(out) + "\n"
