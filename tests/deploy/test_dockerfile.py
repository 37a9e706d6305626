"""Checks the Dockerfile by reading it, since no container engine runs in CI.

A small parser turns the file into stages of instructions, following Docker's rules for line
continuations and comments, and the tests check what docs/deployment.md relies on: a Debian 12
build stage driven by scripts/install-deps.sh, a slim runtime stage with a fixed non-root user,
the entry point and default command, and that every COPY source exists.
"""

import fnmatch
import json
import os
import pathlib
import shlex
import subprocess
from dataclasses import dataclass, field

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DEPLOYMENT = REPO / "deploy" / "deployment.yaml"

BINARY_PATH = "/usr/local/bin/gatehouse"
CONFIG_PATH = "/etc/gatehouse/gatehouse.yaml"
STORE_PATH = "/var/lib/gatehouse"
APP_UID = 10001

# Libraries every debian:bookworm-slim image already has; anything else must be installed.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}


# --- parsing -----------------------------------------------------------------------------------


@dataclass
class Instruction:
    line: int
    keyword: str
    arguments: str


@dataclass
class Stage:
    index: int
    image: str
    name: str
    instructions: list = field(default_factory=list)

    def all(self, keyword):
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword):
        found = self.all(keyword)
        return found[-1] if found else None


def escape_character(lines):
    """The escape directive if the file sets one (only allowed before anything else)."""
    for line in lines:
        stripped = line.strip()
        directive = stripped.lstrip("#").strip().lower().replace(" ", "")
        if not stripped.startswith("#") or "=" not in directive:
            break
        if directive.startswith("escape="):
            return directive.split("=", 1)[1]
    return "\\"


def parse_instructions(text):
    """Logical instructions, with continuations joined and comment lines dropped."""
    lines = text.splitlines()
    escape = escape_character(lines)
    instructions, pending, start = [], None, 0
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        # Comments and blank lines are dropped, inside a continuation too (Docker does the same).
        if not stripped or stripped.startswith("#"):
            continue
        if pending is None:
            pending, start = "", number
        if line.rstrip().endswith(escape):
            pending += line.rstrip()[: -len(escape)] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        instructions.append(Instruction(start, keyword.upper(), arguments.strip()))
        pending = None
    assert pending is None, f"Dockerfile ends inside a continuation started on line {start}"
    return instructions


def parse_stages(instructions):
    stages = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else ""
            stages.append(Stage(len(stages), words[0], name))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            assert instruction.keyword == "ARG", f"line {instruction.line}: not allowed before FROM"
    return stages


def split_flags(arguments):
    """(flags, words) of a COPY or ADD: "--from=build a b" gives ({"from": "build"}, [a, b])."""
    words = arguments.split()
    flags = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    rest = " ".join(words)
    return flags, json.loads(rest) if rest.startswith("[") else shlex.split(rest)


def exec_form(instruction):
    assert instruction is not None
    assert instruction.arguments.startswith("["), f"line {instruction.line}: use the JSON form"
    return json.loads(instruction.arguments)


def run_commands(stage):
    """Every shell command the stage's RUN instructions chain with && or ;."""
    commands = []
    for run in stage.all("RUN"):
        for part in run.arguments.replace(";", "&&").split("&&"):
            commands.append(" ".join(part.split()))
    return commands


@pytest.fixture(scope="module")
def stages():
    return parse_stages(parse_instructions(DOCKERFILE.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def build(stages):
    return stages[0]


@pytest.fixture(scope="module")
def runtime(stages):
    return stages[-1]


def deployment_container():
    deployment = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))
    return deployment["spec"]["template"]["spec"]["containers"][0]


# --- the parser itself -------------------------------------------------------------------------


def test_parser_joins_continuations_and_drops_comments():
    text = "FROM a AS b\n# note\nRUN one \\\n    # inside\n    two\nUSER 1\n"
    instructions = parse_instructions(text)
    assert [(i.keyword, i.arguments.split()) for i in instructions] == [
        ("FROM", ["a", "AS", "b"]),
        ("RUN", ["one", "two"]),
        ("USER", ["1"]),
    ]
    assert instructions[1].line == 3


def test_parser_honours_the_escape_directive():
    text = "# escape=`\nFROM a\nRUN one `\n    two\n"
    instructions = parse_instructions(text)
    assert [i.arguments.split() for i in instructions] == [["a"], ["one", "two"]]


# --- stages ------------------------------------------------------------------------------------


def test_image_is_built_in_at_least_two_stages(stages):
    assert len(stages) >= 2


def test_build_stage_is_full_debian_bookworm(build):
    assert build.image == "debian:bookworm"
    assert build.name, "the build stage needs a name for COPY --from"


def test_runtime_stage_is_debian_bookworm_slim(runtime):
    assert runtime.image.split("@")[0] == "debian:bookworm-slim"


def test_every_copy_from_names_an_earlier_stage(stages):
    copies_from = 0
    for stage in stages:
        earlier = stages[: stage.index]
        known = {s.name for s in earlier if s.name} | {str(s.index) for s in earlier}
        for copy in stage.all("COPY"):
            flags, _ = split_flags(copy.arguments)
            if "from" in flags:
                copies_from += 1
                assert flags["from"] in known, f"line {copy.line}: no stage {flags['from']!r}"
    assert copies_from >= 1, "the runtime stage copies nothing from the build stage"


# --- the build stage ---------------------------------------------------------------------------


def test_build_stage_installs_packages_with_the_project_script(build):
    script = "scripts/install-deps.sh"
    assert (REPO / script).is_file()
    runs = [i for i in build.all("RUN") if script in i.arguments]
    assert runs, f"the build stage never runs {script}"

    # The script must be in the image before the RUN that needs it.
    def copies_script(copy):
        sources = split_flags(copy.arguments)[1][:-1]
        return copy.line < runs[0].line and any(s in (script, ".") for s in sources)

    copied_before = [c for c in build.all("COPY") if copies_script(c)]
    assert copied_before, f"{script} is run before it is copied into the build stage"


def test_build_stage_has_no_package_list_of_its_own(build):
    for command in run_commands(build):
        assert not command.startswith("apt-get install"), f"use install-deps.sh: {command}"


def test_build_stage_compiles_only_gatehouse_in_release_with_ninja(build):
    commands = run_commands(build)
    configure = [c for c in commands if c.startswith("cmake -S")]
    compile_ = [c for c in commands if c.startswith("cmake --build")]
    assert len(configure) == 1 and len(compile_) == 1
    for option in ("-G Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DGATEHOUSE_BUILD_TESTS=OFF"):
        assert option in configure[0], f"configure step lacks {option}"
    assert "--target gatehouse" in compile_[0]


def test_runtime_copies_the_binary_from_the_build_tree(build, runtime):
    copies = [split_flags(c.arguments) for c in runtime.all("COPY")]
    binary = [words for flags, words in copies if flags.get("from") == build.name]
    assert binary and binary[0][-1] == BINARY_PATH

    # cmake -B build under the build stage's working directory puts the binary here.
    workdir = build.last("WORKDIR").arguments
    assert binary[0][0] == f"{workdir}/build/gatehouse"


# --- the runtime stage -------------------------------------------------------------------------


def runtime_packages(runtime):
    packages = set()
    for command in run_commands(runtime):
        if command.startswith("apt-get install"):
            packages |= {w for w in command.split()[2:] if not w.startswith("-")}
    return packages


def test_runtime_stage_installs_the_libraries_gatehouse_links(runtime):
    expected = {"libssl3", "libyaml-cpp0.7", "libspdlog1.10", "libfmt9", "libmimalloc2.0",
                "ca-certificates"}
    assert expected <= runtime_packages(runtime)


def test_runtime_stage_has_no_build_tools(runtime):
    for command in run_commands(runtime):
        assert "install-deps.sh" not in command
    for package in runtime_packages(runtime):
        assert not package.endswith("-dev"), f"runtime installs {package}"
        assert package not in ("build-essential", "cmake", "ninja-build", "ccache")


def owning_package(library_path):
    """The Debian package that ships a library, trying the /usr-merged spelling too."""
    candidates = [library_path, os.path.realpath(library_path)]
    candidates += ["/usr" + p for p in list(candidates) if not p.startswith("/usr/")]
    for candidate in candidates:
        result = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
        if result.returncode == 0:
            return result.stdout.split(":")[0]
    pytest.fail(f"no Debian package ships {library_path}")


def test_runtime_packages_cover_every_library_the_built_binary_links(runtime):
    value = os.environ.get("GATEHOUSE_BINARY")
    if not value or not pathlib.Path(value).is_file():
        pytest.skip("needs GATEHOUSE_BINARY pointing at a built gatehouse (ctest sets it)")
    result = subprocess.run(["ldd", value], capture_output=True, text=True, check=True)
    libraries = [w for w in result.stdout.split() if w.startswith("/") and ".so" in w]
    assert libraries, f"ldd found no libraries:\n{result.stdout}"

    needed = {owning_package(path) for path in libraries} - BASE_IMAGE_PACKAGES
    missing = needed - runtime_packages(runtime)
    assert not missing, f"the runtime stage does not install {sorted(missing)}"


def test_runtime_user_is_a_fixed_non_root_uid(runtime):
    user = runtime.last("USER")
    assert user is not None, "the runtime stage never sets USER"
    ids = user.arguments.split(":")
    assert all(i.isdigit() for i in ids), f"USER {user.arguments} is not numeric"
    assert int(ids[0]) == APP_UID and all(int(i) != 0 for i in ids)


def test_runtime_user_matches_the_deployment():
    context = deployment_container()["securityContext"]
    assert context["runAsUser"] == APP_UID
    assert context.get("runAsGroup", APP_UID) == APP_UID


def test_store_directory_belongs_to_the_app_user_alone(runtime):
    commands = [c for c in run_commands(runtime) if c.split()[-1:] == [STORE_PATH]]
    setup = [c for c in commands if c.startswith("install -d")]
    assert setup, f"the runtime stage does not create {STORE_PATH}"
    assert f"-o {APP_UID}" in setup[0] and f"-g {APP_UID}" in setup[0] and "-m 0700" in setup[0]


def test_entrypoint_is_the_gatehouse_binary(runtime):
    assert exec_form(runtime.last("ENTRYPOINT")) == [BINARY_PATH]


def test_default_command_runs_the_mounted_config(runtime):
    command = exec_form(runtime.last("CMD"))
    assert command == ["run", "--config", CONFIG_PATH]
    # The Deployment passes the same arguments, so the image and the manifests agree.
    assert deployment_container()["args"] == command


def test_ports_match_the_deployment(runtime):
    exposed = {int(p.split("/")[0]) for e in runtime.all("EXPOSE") for p in e.arguments.split()}
    declared = {p["containerPort"] for p in deployment_container()["ports"]}
    assert exposed == {8080, 8443, 9901} == declared


def test_stop_signal_is_sigterm(runtime):
    stop = runtime.last("STOPSIGNAL")
    assert stop is not None and stop.arguments == "SIGTERM"


# --- the build context -------------------------------------------------------------------------


def ignore_patterns():
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [l.strip().strip("/") for l in lines if l.strip() and not l.startswith("#")]


def is_ignored(path, patterns):
    """True when `path` or a folder above it matches a .dockerignore pattern (no ! rules)."""
    parts = pathlib.PurePosixPath(path).parts
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    return any(fnmatch.fnmatchcase(prefix, p.removeprefix("**/")) for prefix in prefixes
               for p in patterns)


def test_dockerignore_keeps_build_trees_and_git_out():
    patterns = ignore_patterns()
    assert not [p for p in patterns if p.startswith("!")], "negated patterns are not checked here"
    for path in (".git", "build", "build-asan", "build/gatehouse"):
        assert is_ignored(path, patterns), f".dockerignore lets {path} into the context"


def test_every_file_copied_from_the_context_exists_and_is_not_ignored(stages):
    patterns = ignore_patterns()
    sources = []
    for stage in stages:
        for copy in stage.all("COPY") + stage.all("ADD"):
            flags, words = split_flags(copy.arguments)
            if "from" not in flags:
                sources += words[:-1]
    assert sources, "nothing is copied from the build context"

    for source in sources:
        if source == ".":
            continue
        matches = list(REPO.glob(source))
        assert matches, f"COPY source {source} does not exist in the repository"
        assert not is_ignored(source, patterns), f"COPY source {source} is in .dockerignore"


def test_the_sources_the_build_needs_are_not_ignored():
    patterns = ignore_patterns()
    for path in ("CMakeLists.txt", "config", "proxy", "scripts/install-deps.sh"):
        assert not is_ignored(path, patterns), f".dockerignore hides {path} from the build"
