"""Pictures: the static parameter sweep that stands in for an interactive cell on the course's pages."""
import numpy as np

import defectlab
from defectlab import viz


def test_sweep_figure_one_column_per_value_the_same_draw_along_a_row():
    goods = [np.full((48, 48, 3), 0.5, np.float32), np.full((48, 40, 1), 0.3, np.float32)]
    made = []

    def make(area_max):
        made.append(area_max)
        return defectlab.create("cutpaste", area_ratio=(0.02, area_max))

    fig = viz.sweep_figure(make, [0.05, 0.3], goods, [None, np.ones((48, 40), bool)], name="area_max",
                           row_labels=["grey", "dark"])
    assert made == [0.05, 0.3]  # one method per value, built once
    axes = np.array(fig.axes).reshape(2, 2)
    assert [a.get_title() for a in axes[0]] == ["area_max = 0.05", "area_max = 0.3"]
    assert [a.get_ylabel() for a in axes[:, 0]] == ["grey", "dark"]
    shown = axes[1][1].get_images()[0].get_array()
    expected = defectlab.create("cutpaste", area_ratio=(0.02, 0.3))(goods[1], np.random.default_rng([0, 1]),
                                                                    foreground=np.ones((48, 40), bool))
    assert np.allclose(shown, np.clip(viz.outline(expected.image, expected.mask), 0, 1))
    import matplotlib.pyplot as plt

    plt.close(fig)
    fig = viz.sweep_figure(make, [0.3], goods[1:], [np.ones((48, 40), bool)], seed=1, zoomed=True)
    first = defectlab.create("cutpaste", area_ratio=(0.02, 0.3))(goods[1], np.random.default_rng([1, 0]),
                                                                 foreground=np.ones((48, 40), bool))
    assert np.allclose(fig.axes[0].get_images()[0].get_array(),
                       np.clip(viz.zoom(viz.outline(first.image, first.mask), first.mask), 0, 1))
    plt.close(fig)


def test_outline_leaves_the_defect_as_drawn():
    image = np.full((9, 9, 1), 0.5, np.float32)
    mask = np.zeros((9, 9), bool)
    mask[4, 2:7] = True  # a one-pixel-thin scratch: `overlay` would paint all of it
    out = viz.outline(image, mask)
    assert np.allclose(out[mask], 0.5) and np.allclose(out[3, 2:7], (1.0, 0.1, 0.1)) and np.allclose(out[0, 0], 0.5)


def test_long_row_labels_wrap_to_the_row_height():
    """AdaBLDM's gallery labelled rows with whole prompts, which ran into the neighbouring rows' labels."""
    import matplotlib.pyplot as plt

    from defectlab.viz import grid_figure

    tile = np.zeros((8, 8, 3), np.float32)
    long = "a magnetic tile with a Uneven defect on its upper left edge"
    fig = grid_figure([[tile, tile], [tile, tile]], [long, "short"], ("a", "b"), cell=2.0)
    first, second = (fig.axes[0].get_ylabel(), fig.axes[2].get_ylabel())
    assert "\n" in first and first.replace("\n", " ") == long
    assert max(len(line) for line in first.split("\n")) <= 24 and second == "short"
    plt.close(fig)
