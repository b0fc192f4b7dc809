"""The documentation site's promises: the guide's code runs, every public submodule is
reachable and has its API page, and the defaults table says what the signatures say.

The site itself is built with warnings as errors by .ci/check_install's docs route
(``python -m sphinx -W -b html docs docs/_build/html``), which fails on a broken link between
pages, a broken docstring reference or a gallery example that raises.
"""

from __future__ import annotations

import csv
import inspect
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import deltaprop as dp
from conftest import HAVE_MPI, MPI_MISSING, MPIEXEC

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted((DOCS / "guide").glob("*.md")) + [DOCS / "index.md"]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def _python_blocks(page: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", page.read_text(encoding="utf-8"), re.S | re.M)


PAGES_WITH_CODE = [page for page in PAGES if _python_blocks(page)]


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda page: page.stem)
def test_the_python_blocks_of_each_guide_page_run(page, tmp_path, monkeypatch):
    """A page's blocks run in order in one namespace (as a reader types them), in a fresh
    directory (they write model files); the distributed page's under mpiexec on 2 ranks."""
    source = "\n".join(_python_blocks(page))
    monkeypatch.chdir(tmp_path)
    if "comm=MPI.COMM_WORLD" in source:
        if not HAVE_MPI:
            pytest.skip(MPI_MISSING)
        script = tmp_path / "block.py"
        script.write_text(source, encoding="utf-8")
        subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(script)], check=True, timeout=300)
        assert (tmp_path / "model.npz").is_file()
        return
    if "load_fashion_mnist" in source and not FASHION_MNIST.is_file():
        pytest.skip("needs Debian's dataset-fashion-mnist, which .ci/run installs")
    with warnings.catch_warnings():
        # The warnings the guide's code shows its reader: PyTorch's, about the exporter the
        # interop page picks on purpose (dynamo=False, the TorchScript one).
        warnings.filterwarnings(
            "ignore", "You are using the legacy TorchScript", DeprecationWarning
        )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        exec(compile(source, str(page), "exec"), {"__name__": "__docs__"})


def test_the_guide_pages_have_the_code_blocks_they_had():
    # A block renamed to ```py or ```Python would silently leave the run above.
    assert {page.stem for page in PAGES_WITH_CODE} >= {
        "getting-started",
        "equations",
        "training",
        "interop",
        "distributed",
    }


def _public_submodules() -> set[str]:
    package = Path(dp.__file__).parent
    names = {path.stem for path in package.glob("*.py") if not path.stem.startswith("_")}
    return names - {"cli", "network", "training"}  # the command, and modules dp re-exports


def test_every_public_submodule_is_reachable_as_an_attribute_in_a_fresh_process():
    names = sorted(_public_submodules())
    code = "import deltaprop as dp\n" + "".join(f"dp.{name}\n" for name in names)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert {"plot", "sklearn", "datasets", "onnx"} <= set(dir(dp))


def test_every_public_submodule_and_name_has_its_api_entry():
    api = (DOCS / "api" / "index.md").read_text(encoding="utf-8")
    entries = set(re.findall(r"^   (\w+)$", api, re.M))
    assert _public_submodules() <= entries
    assert set(dp.__all__) - {"__version__"} - _public_submodules() <= entries


def _defaults_table() -> dict[str, list[str]]:
    text = (DOCS / "guide" / "defaults.md").read_text(encoding="utf-8")
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5:
            rows[cells[0]] = cells[1:4]
    return rows


def _defaults(function) -> dict[str, object]:
    return {
        name: parameter.default
        for name, parameter in inspect.signature(function).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }


def _cli_defaults() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "deltaprop", "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    return done.stdout.split("options:", 1)[1]


def test_the_defaults_table_says_what_the_signatures_and_the_cli_say():
    from deltaprop.sklearn import DeltapropClassifier, DeltapropRegressor

    rows = _defaults_table()
    network, fit = _defaults(dp.Network), _defaults(dp.Network.fit)
    estimator = _defaults(DeltapropClassifier)
    assert estimator == {**_defaults(DeltapropRegressor), "class_weight": None}  # a classifier's
    help_text = _cli_defaults()
    for setting, (network_cell, cli_cell, estimator_cell) in rows.items():
        if setting == "setting":
            continue
        # Every `name=value` the table gives is the signature's default.
        for name, value in re.findall(r"`(\w+)=([^`]+)`", network_cell):
            # (seed is both Network's, of the weights, and fit's, of the row orders)
            signature = {repr(defaults[name]) for defaults in (network, fit) if name in defaults}
            assert value.replace('"', "'") in signature, (setting, name)
        for name, value in re.findall(r"`(\w+)=([^`]+)`", estimator_cell):
            assert repr(estimator[name]) == value.replace('"', "'"), (setting, name)
        # Every `--option value` is the command's default in its --help.
        for option, value in re.findall(r"`(--[\w-]+) ([^`]+)`", cli_cell):
            described = re.search(rf"^  {option}\b.*?\(default: ([^)]*)\)", help_text, re.S | re.M)
            assert described, option
            assert described.group(1).strip() == value, (setting, option)


# The questions a new user comes with; the front page answers each with a link (one click,
# the answer on the page it opens). A renamed or removed page, or a heading whose anchor a
# link names, fails here as well as in the site's -W build.
FRONT_PAGE_QUESTIONS = (
    "install deltaprop",
    "train on my CSV file",
    "choose the cost for a classifier",
    "save and load a model",
    "use it in scikit-learn",
    "run on 4 processes",
    "export to ONNX",
    "why my deep sigmoid network does not learn",
)


def _front_page_rows() -> dict[str, list[str]]:
    """The front page's "I want to | read" table: question -> the link targets of its row."""
    rows = {}
    for line in (DOCS / "index.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 2:
            rows[cells[0]] = re.findall(r"\]\(([^)\s]+)\)", cells[1])
    return rows


def _heading_anchors(page: Path) -> set[str]:
    """The anchors MyST gives a page's headings (myst_heading_anchors: lower case, spaces to
    hyphens, punctuation dropped)."""
    headings = re.findall(r"^#{1,3} (.+)$", page.read_text(encoding="utf-8"), re.M)
    return {re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-") for h in headings}


def _linked_page(target: str) -> tuple[Path, str]:
    """The source file a front-page link opens (a gallery page's is its script), and its anchor."""
    path, _, anchor = target.partition("#")
    if path.startswith("auto_examples/") and path != "auto_examples/index.rst":
        return DOCS / "examples" / (Path(path).stem + ".py"), anchor
    if path == "auto_examples/index.rst":
        return DOCS / "examples" / "README.rst", anchor
    return DOCS / path, anchor


@pytest.mark.parametrize("question", FRONT_PAGE_QUESTIONS)
def test_the_front_page_links_each_question_to_a_page_that_exists(question):
    rows = {text: links for text, links in _front_page_rows().items() if question in text}
    assert len(rows) == 1, f"the front page's table has no single row for {question!r}"
    (links,) = rows.values()
    assert links, f"{question!r}: no link"
    for target in links:
        page, anchor = _linked_page(target)
        assert page.is_file(), f"{question!r} links to {target}, which is not a page"
        if anchor:
            assert anchor in _heading_anchors(page), f"{question!r}: no heading #{anchor}"


def _recorded_speeds() -> dict[tuple[str, str], float]:
    """bench/results/speed.csv: (config, implementation) -> samples/s."""
    with open(DOCS.parent / "bench" / "results" / "speed.csv", newline="") as file:
        return {
            (row["config"], row["implementation"]): float(row["samples_per_s"])
            for row in csv.DictReader(file)
        }


def test_the_speed_table_shows_the_figures_the_speed_plots_are_drawn_from():
    recorded = _recorded_speeds()
    text = (DOCS / "guide" / "speed.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| ([A-E]) [`p].*$", text, re.M)
    assert rows == ["A", "B", "C", "D", "E"]
    columns = ("deltaprop", "torch", "sklearn", "numpy", "gemm-limit-interleaved")
    for line in re.findall(r"^\| [A-E] [`p].*$", text, re.M):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        key, ours = cells[0][0], recorded[(cells[0][0], "deltaprop")]
        for implementation, cell in zip(columns, cells[1:6]):
            rate = recorded[(key, implementation)]
            assert cell.split()[0] == f"{rate:,.0f}", (key, implementation)
            shown = re.search(r"\(([\d.]+)\u00d7\)", cell)
            if shown:  # deltaprop's speed over the peer's, to 3 significant digits
                assert float(shown.group(1)) == float(f"{ours / rate:.3g}"), (key, implementation)
        assert cells[6] == f"{ours / recorded[(key, 'gemm-limit-interleaved')]:.2f}", key


def test_the_bfloat16_table_shows_the_recorded_bfloat16_rows():
    recorded = _recorded_speeds()
    text = (DOCS / "guide" / "speed.md").read_text(encoding="utf-8")
    lines = re.findall(r"^\| ([C-E]-bf16) .*$", text, re.M)
    assert lines == ["C-bf16", "D-bf16", "E-bf16"]
    for line in re.findall(r"^\| [C-E]-bf16 .*$", text, re.M):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        key = cells[0].split()[0]
        ours = recorded[(key, "deltaprop")]
        assert cells[1] == f"{ours:,.0f}", key
        torch, limit = cells[3].split(), cells[4].split()
        torch_rate = recorded[(key, "torch")]
        assert torch[0] == f"{torch_rate:,.0f}", key
        assert float(torch[1].strip("(\u00d7)")) == float(f"{ours / torch_rate:.3g}"), key
        assert limit[0] == f"{recorded[(key, 'gemm-limit')]:,.0f}", key
        assert limit[1] == f"({ours / recorded[(key, 'gemm-limit')]:.2f})", key


def test_the_speed_figures_are_drawn_from_the_recorded_csv(tmp_path):
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        import bench_figures
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    paths = bench_figures.draw_all(out_dir=tmp_path)
    assert [path.name for path in paths] == ["speed-float32.png", "speed-bfloat16.png"]
    assert all(path.stat().st_size > 10_000 for path in paths)
    shown = re.findall(r"_generated/(speed-\w+\.png)", (DOCS / "guide" / "speed.md").read_text())
    assert sorted(shown) == sorted(path.name for path in paths)
