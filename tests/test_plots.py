"""Figures: image grids show the images they are given, and say at which scale."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from i2i_unlearn import plots  # noqa: E402


def _rows(k: int, n: int, channels: int = 1, value: float = 0.0) -> dict[str, torch.Tensor]:
    return {f"row {i}": torch.full((n, channels, 8, 8), value) for i in range(k)}


def test_image_grids_put_every_panel_in_one_figure_column_by_column():
    grids = {"a": _rows(3, 4, value=-1.0), "b": _rows(2, 4, value=1.0),
             "c": _rows(3, 4, 3, value=1.0)}
    fig = plots.image_grids(grids, title="forget images", scale="tiny", ncols=2)
    assert fig._suptitle.get_text() == "forget images (tiny scale)"
    titled = {p._suptitle.get_text(): p for p in fig.subfigs if p._suptitle is not None}
    assert sorted(titled) == ["a", "b", "c"]
    panels = [titled[k] for k in "abc"]
    images = [[ax.get_images()[0].get_array() for ax in p.axes] for p in panels]
    assert [len(i) for i in images] == [12, 8, 12]
    assert all(np.allclose(a, 0) for a in images[0]) and all(np.allclose(a, 1) for a in images[1])
    assert images[2][0].shape == (8, 8, 3)  # RGB stays RGB
    fig.canvas.draw()
    (ax, ay), (bx, by), (cx, cy) = (p.axes[0].get_window_extent().p0 for p in panels)
    assert abs(ax - bx) < 1 and ax < cx and by < ay and abs(ay - cy) < 1  # a over b; c beside a
    with pytest.raises(ValueError, match="ncols"):
        plots.image_grids(grids, ncols=0)
    with pytest.raises(ValueError, match="grids"):
        plots.image_grids({})
    matplotlib.pyplot.close("all")


def test_image_grid_keeps_its_title_and_scale():
    fig = plots.image_grid(_rows(2, 3), title="before / after", scale="paper")
    assert fig._suptitle.get_text() == "before / after (paper scale)"
    assert len([ax for ax in fig.axes if ax.get_images()]) == 6
    matplotlib.pyplot.close(fig)
