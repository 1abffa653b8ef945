"""Execute every notebook at tiny scale with papermill, check what it computed, build the book."""
import ast
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import build_book  # noqa: E402
from notebook_fixtures import TINY, glued, page_values  # noqa: E402


def test_every_notebook_has_a_test_entry_and_known_parameters():
    names = {nb.stem for nb in build_book.notebooks()}
    assert names == set(TINY)
    for nb in build_book.notebooks():
        params = papermill.inspect_notebook(str(nb))
        assert "scale" in params
        unknown = set(TINY[nb.stem]) - set(params)
        assert not unknown, f"{nb.name}: papermill would ignore {unknown}"
        # make book SCALE=paper: a paper-scale version, or tiny scale on purpose
        paper = build_book.parameters_for(nb, "paper")
        assert paper.get("scale") == "paper" or nb.stem in build_book.TINY_ONLY
        unknown = set(paper) - set(params)
        assert not unknown, f"{nb.name}: papermill would ignore paper parameters {unknown}"
        # A table a cell shows for Colab readers is glued for the book: shown once, not twice.
        for i, cell in enumerate(nbformat.read(nb, as_version=4).cells):
            tags = cell.metadata.get("tags", [])
            lines = cell.source.rstrip().splitlines()
            if (cell.cell_type == "code" and "hide-input" in tags and lines
                    and re.fullmatch(r"[A-Za-z_]\w*", lines[-1])):
                assert "remove-output" in tags, f"{nb.name} cell {i}: {lines[-1]} shows twice"


@pytest.mark.slow
def test_quickstart_forgets_the_forget_digits_and_keeps_the_others(executed):
    values = glued(executed / "00_quickstart.ipynb")
    assert {"loss_curve", "grid_forget", "grid_retain", "scores_table"} <= set(values)
    assert "image/png" in values["grid_forget"]
    forget_ratio = float(values["forget_ratio"]["text/plain"])
    retain_ratio = float(values["retain_ratio"]["text/plain"])
    # Measured at the defaults (alpha 0.25, 150 steps at lr 1e-3, seed 0): forget x2.00, retain
    # x1.05 (300 steps at 5e-4, the earlier default: x2.03 and x1.05).
    # The target for mae-mnist is forget >= 3x; the tiny MNIST model does not reach it
    # yet (see issue 2's note), so this asserts the behaviour it does have: the forget error at
    # least doubles while the retain error stays within 10%.
    assert forget_ratio >= 1.9, forget_ratio
    assert retain_ratio <= 1.10, retain_ratio
    # The objective's ceiling (the original's fill of noise, the mean target): x3.9 on mae-mnist.
    # The run lies between the original (0%) and it.
    target_ratio = float(values["target_ratio"]["text/plain"])
    share = float(values["target_share"]["text/plain"])
    assert target_ratio > forget_ratio and 0 < share < 100, (target_ratio, share)
    nb = nbformat.read(executed / "00_quickstart.ipynb", as_version=4)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "remove-cell" in injected[0].metadata["tags"]
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.slow
def test_theory_chapter_checks_every_numbered_claim(executed):
    values = glued(executed / "01_theory.ipynb")
    passed = int(values["claims_passed"]["text/plain"])
    total = int(values["claims_total"]["text/plain"])
    assert total == 12 and passed == total, (passed, total)
    assert all(f"claim{n}_result" in values for n in range(1, total + 1))
    assert {"fig_mi", "fig_bounds", "fig_unbounded", "fig_zoo", "fig_grid"} <= set(values)
    nb = nbformat.read(executed / "01_theory.ipynb", as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert "widgets" in nb.metadata  # the precomputed widget state, embedded in the book


@pytest.mark.slow
def test_audit_chapter_flags_the_original_and_states_its_scale(executed):
    values = glued(executed / "09_audit.ipynb")
    assert {"verdict_table", "fig_verdict", "fig_probe", "fig_membership", "fig_relearn",
            "fig_context"} <= set(values)
    n_probes = int(values["n_probes"]["text/plain"])
    assert n_probes == 4
    # the retrained reference is never flagged; the original is flagged wherever a probe resolves
    # the two references with the paired se (per-image differences). Measured with
    # mae-mnist-retrained (4000 steps, 100 unlearning steps): relearning (forget MSE 0.386 vs
    # 0.535 after 30 steps, paired se ~0.011), the context sweep (pooled ratio 0.980 vs 1.227,
    # paired se 0.014) and the linear probe (0.916 vs 0.880, paired se 0.016: 2.2 se) resolve
    # them; membership inference does not (no membership signal at this scale: AUC 0.51 +- 0.03).
    assert int(values["retrained_flags"]["text/plain"]) == 0
    assert int(values["original_flags"]["text/plain"]) >= 3
    # the separation table resolves exactly the probes that flag the original
    separation = values["separation_table"]["text/html"]
    assert separation.count(">yes<") == int(values["original_flags"]["text/plain"])
    assert float(values["audit_seconds"]["text/plain"]) < 600
    # Why membership inference cannot flag the original here: it has no generalisation gap on the
    # forget classes (measured: held-out images err 4.3 % *less* than its members, z = -0.4);
    # the page's reading follows the measured z.
    z = float(values["gap_original_z"]["text/plain"])
    reading = values["gap_reading"]["text/plain"]
    assert ("within noise" in reading) == (z < 2), (z, reading)
    # The visible pixels alone (a small CNN on the masked training images) tell the forget classes
    # apart at least as well as a linear probe of either reference's embeddings (measured: 0.973
    # against 0.927 original, 0.867 retrained): the probe measures what the masked image shows.
    ceiling = float(values["probe_ceiling_forget"]["text/plain"])
    assert ceiling > 0.9
    assert ceiling >= float(values["probe_original"]["text/plain"]) - 0.03
    nb = nbformat.read(executed / "09_audit.ipynb", as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors


@pytest.mark.slow
def test_qualitative_figure_has_every_method_and_the_retrained_row(executed):
    values = glued(executed / "04_figure_qualitative.ipynb")
    assert {"grid_forget", "grid_retain"} <= set(values)
    assert all("image/png" in values[k] for k in ("grid_forget", "grid_retain"))
    nb = nbformat.read(executed / "04_figure_qualitative.ipynb", as_version=4)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.slow
def test_book_builds_with_warnings_as_errors(book_html):
    html = book_html
    page = (html / "notebooks" / "00_quickstart.html").read_text()
    assert "Traceback" not in page
    assert "Scale of every number and figure on this page" in page
    assert "colab.research.google.com/github" in page and "notebooks/00_quickstart.ipynb" in page
    assert (html / "index.html").exists() and (html / "book" / "references.html").exists()
    assert page.count("<img") >= 4  # ... and the objective figure the method chapter links to
    method = (html / "book" / "method.html").read_text()
    assert "00_quickstart.html#fig-quickstart-objective" in method


@pytest.mark.slow
def test_glued_tables_are_numbered_as_tables_and_figures_as_figures(book_html):
    """_ext/glued_tables.py: a glued DataFrame is "Table N.k", a glued plot stays "Fig. N.k";
    N is the chapter (so the book's numbers never read like the paper's "Table 3"), and each kind
    counts k = 1, 2, ... on its own within a chapter."""
    counted = {"Table": 0, "Fig.": 0}
    for page in sorted((book_html / "notebooks").glob("*.html")):
        html = page.read_text()
        chapter = re.search(r'<h1><span class="section-number">(\d+)\. </span>', html)
        numbers = {"Table": [], "Fig.": []}
        for m in re.finditer(r'<figure class="([^"]*)" id="([^"]*)">(.*?)</figure>', html, re.S):
            classes, node_id, body = m.groups()
            label = re.search(r'caption-number">(Table|Fig\.) (\d+)\.(\d+) ', body)
            assert label and chapter, f"{page.name}#{node_id}: no chapter-numbered caption"
            kind = label.group(1)
            shows_table, shows_image = "<table" in body, "<img" in body
            assert kind == ("Table" if shows_table and not shows_image else "Fig."), \
                f"{page.name}#{node_id} is numbered {kind}"
            assert ("glued-table" in classes.split()) == (kind == "Table")
            first_row = re.search(r"<tbody>\s*<tr>(.*?)</tr>", body, re.S)
            if kind == "Table" and len(re.findall(r"<t[dh][\s>]", first_row.group(1))) >= 10:
                assert "full-width" in classes.split(), f"{page.name}#{node_id}: wide, not full-width"
            assert label.group(2) == chapter.group(1), f"{page.name}#{node_id}: {label.group(0)}"
            numbers[kind].append(int(label.group(3)))
        for kind, seen in numbers.items():
            assert seen == list(range(1, len(seen) + 1)), f"{page.name}: {kind} numbers {seen}"
            counted[kind] += len(seen)
    assert counted["Table"] >= 10 and counted["Fig."] >= 10


@pytest.mark.slow
def test_scorecard_pastes_each_pages_verdicts_and_numbers(executed, book_html):
    page = (book_html / "book" / "scorecard.html").read_text()
    assert re.search(r'<img[^>]+src="\.\./_images/[0-9a-f]+\.png"', page)  # 03b's figure, pasted
    text = re.sub(r"<[^>]+>", " ", page)
    text = re.sub(r"\s+", " ", text)

    def value(notebook, key, fmt="s"):
        v = ast.literal_eval(glued(executed / f"{notebook}.ipynb")[key]["text/plain"])
        return format(str(v) if fmt == "s" else v, fmt)  # as myst-nb formats a pasted value

    # The pasted cells, in the order the page shows them: each from the page that computed it.
    want = ["tiny"]
    for nb in ("02_table1_imagenet", "03_table_places"):
        want += [value(nb, "prose_model"), value(nb, "claim1_verdict"),
                 value(nb, "ours_retain_fid_ratio", ".2f"), value(nb, "claim2_verdict"),
                 value(nb, "ours_forget_mse_ratio", ".2f"), value(nb, "claim3_verdict"),
                 value(nb, "claim4_verdict")]
    want += [value("03b_table_families", "families_holding_n", "d"),
             value("05_figure_tsne", "tsne_verdict"), value("06_ablation_alpha", "alpha_verdict"),
             value("07_ablation_proxy", "proxy_verdict"), value("08_appendix_masks", "mask_verdict"),
             value("01_theory", "claims_passed", "d"),
             value("02_table1_imagenet", "ours_over_retrained_forget_mse", ".2f"),
             value("00_quickstart", "target_ratio", ".2f"),
             value("02_table1_imagenet", "ceiling_forget_fid_ratio", ".2f"),
             value("08_appendix_masks", "context_auc_main"),
             value("09_audit", "original_flags", "d"),
             value("09_audit", "gap_held_out_phrase"), value("09_audit", "gap_original_z", ".1f")]
    at = 0
    for item in want:
        found = text.find(item, at)
        assert found >= 0, f"scorecard: {item!r} missing after position {at}"
        at = found + len(item)
    assert "holds" in text and "n/a" not in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
COLAB = re.compile(r'https://colab\.research\.google\.com/github/[^"\s]+')


# Run after the page's own scripts: the width every display equation takes against the width
# it has, written into the DOM for --dump-dom to carry out.
MEASURE = """<script>window.addEventListener("load", () => setTimeout(() => {
  const w = [...document.querySelectorAll("mjx-container[display=true]")].map(
    m => Math.round(m.scrollWidth) + "/" + Math.round(m.parentElement.clientWidth));
  document.body.setAttribute("data-equation-widths", w.join(" "));
}, 1000));</script>"""


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran, in headless Chromium at 1280 px with every network
    name mapped to nowhere (a CDN script fails fast instead of hanging): what a reader of a
    copied book sees offline. Rendered from a copy next to the page that also measures the
    display equations (``data-equation-widths`` on <body>)."""
    copy = page.with_name(f"_measured_{page.name}")
    copy.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    try:
        with tempfile.TemporaryDirectory() as profile:
            out = subprocess.run(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}",
                 "--host-resolver-rules=MAP * 127.0.0.1", "--window-size=1280,2000",
                 "--virtual-time-budget=4000", "--dump-dom", copy.as_uri()],
                capture_output=True, text=True, timeout=120)
    finally:
        copy.unlink()
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_every_page_renders_without_errors_in_a_browser(book_html):
    pages = [p for p in sorted(book_html.rglob("*.html"))
             if p.parent.name in ("notebooks", "book") or p.name == "index.html"]
    assert len(pages) >= len(build_book.notebooks()) + 2
    for page in pages:
        dom = rendered_dom(page)
        name = page.relative_to(book_html)
        assert "Traceback (most recent call last)" not in dom, name
        assert not re.search(r'class="[^"]*\b(output_error|traceback)\b', dom), name
        assert "{glue:" not in dom, f"{name}: a glue role left unrendered (e.g. inside backticks)"
        # MathJax and the widget scripts come with the book (tools/vendor_js.py), so equations
        # are typeset and widgets drawn with no network
        html = page.read_text()
        cdn = re.findall(r'<script[^>]+src="(https?://[^"]+)"', html)
        assert not cdn, f"{name}: scripts from CDNs (did tools/vendor_js.py fail?): {cdn}"
        if 'class="math notranslate' in html:
            assert "<mjx-container" in dom, f"{name}: equations not typeset"
            assert not re.search(r"\\[(\[]", dom), f"{name}: raw TeX left in the page"
            # an undefined macro is drawn in red, a syntax error as an merror box
            errors = re.findall(r'<mtext mathcolor="red">([^<]*)|<merror[^>]*data-mjx-error="([^"]*)"', dom)
            assert not errors, f"{name}: TeX errors {errors}"
            widths = re.search(r'data-equation-widths="([^"]*)"', dom).group(1).split()
            too_wide = [w for w in widths if int(w.split("/")[0]) > int(w.split("/")[1])]
            assert not too_wide, f"{name}: display equations wider than the text (px): {too_wide}"
        views = html.count("application/vnd.jupyter.widget-view+json")
        drawn = len(re.findall(r'class="[^"]*\bjupyter-widgets\b', dom))
        assert drawn >= views, f"{name}: {views} widget views, {drawn} drawn"
        for src in re.findall(r'<img[^>]+src="([^"]+)"', dom):
            if not src.startswith(("data:", "blob:", "http")):  # blob: an image widget
                target = (page.parent / src.split("#")[0]).resolve()
                assert target.is_file(), f"{name}: missing image {src}"
        links = set(COLAB.findall(dom))
        if page.parent.name == "notebooks":
            want = (f"https://colab.research.google.com/github/i2i-unlearn/i2i-unlearn/blob/main/"
                    f"notebooks/{page.stem}.ipynb")
            assert links == {want}, f"{name}: Colab links {links}"
        else:
            assert not links, f"{name}: a Colab link on a page without a notebook: {links}"


@pytest.mark.slow
def test_proxy_ablation_shows_what_the_retain_term_buys(executed):
    values = page_values(executed, "07_ablation_proxy", names={"proxy_table", "proxy_verdict"},
                         figures=("fig_proxy_ratios", "grid_proxy_forget", "grid_proxy_retain"))
    ratio = {k: float(v["text/plain"].strip("'")) for k, v in values.items() if k.endswith("_ratio")}
    # Measured (mae-mnist, 100 steps, seed 0): retain MSE x1.05 real set, x1.12 proxy, x2.41
    # scenes, x3.39 none; forget MSE x1.51, x1.46, x2.93, x3.95.
    assert ratio["retain_retain_mse_ratio"] <= 1.10
    assert ratio["proxy_retain_mse_ratio"] <= 1.20
    assert ratio["none_retain_mse_ratio"] > 2 * ratio["retain_retain_mse_ratio"]
    assert all(ratio[f"{r}_forget_mse_ratio"] > 1.2 for r in ("retain", "proxy", "other", "none"))
    # another dataset as the retain set: its verdict follows the retain bar (at most +10 % MSE)
    other_keeps = ratio["other_retain_mse_ratio"] <= 1.10
    assert values["other_verdict"]["text/plain"].strip("'") == (
        "holds" if other_keeps else "does not hold")


@pytest.mark.slow
def test_explorer_embeds_every_precomputed_view(executed):
    values = page_values(executed, "10_explorer", names={"n_views", "explorer_table"})
    path = executed / "10_explorer.ipynb"
    n_views = int(values["n_views"]["text/plain"])
    assert n_views == 11  # the default grid: 6 methods, 2 more alphas, forget [8], 2 on scenes
    nb = nbformat.read(path, as_version=4)
    state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    images = [m for m in state.values() if m["model_name"] == "ImageModel"]
    assert len(images) == n_views  # each view once, switched in the browser without a kernel
    assert "explorer_table" in values


@pytest.mark.slow
def test_own_model_page_checks_the_contract_trains_and_unlearns(executed):
    values = page_values(executed, "11_own_model",
                         names=("contract_failures", "broken_message", "own_table", "reload_same"),
                         figures=("grid_forget", "grid_retain"))
    number = lambda k: float(values[k]["text/plain"])
    assert number("contract_failures") == 0 and number("contract_checks") == 15
    assert "generate: " in values["broken_message"]["text/plain"]
    assert values["reload_same"]["text/plain"] == "True"
    # Measured at the page's defaults (500 pre-training steps, alpha 1, 300 steps at 3e-3,
    # seed 0): ours forget x1.51, retain x0.99; retrained x1.58 / x0.93; without the bottleneck
    # x1.85 / x1.49. Ours raises the forget error and keeps retain within 10 %; without a global
    # embedding, retain rises with forget.
    assert number("forget_ratio") >= 1.3 and number("retain_ratio") <= 1.10
    assert number("local_retain_ratio") > 1.2
    assert number("ceiling_ratio") > number("forget_ratio")
