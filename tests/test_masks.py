"""defectlab.masks: shapes, determinism, foreground, geometry that moves pixels consistently."""
import cv2
import numpy as np
import pytest

from defectlab import DefectlabError, masks


def ring(shape=(70, 90)):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    r = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2)
    return (r > 10) & (r < 30)


@pytest.mark.parametrize("shape,res", [((64, 64), (4, 4)), ((37, 91), (3, 8)), ((5, 7), (32, 1))])
def test_perlin_noise_shape_range_determinism(shape, res):
    a = masks.perlin_noise(shape, res, np.random.default_rng(3))
    b = masks.perlin_noise(shape, res, np.random.default_rng(3))
    assert a.shape == shape and a.dtype == np.float32
    assert np.array_equal(a, b)
    assert np.abs(a).max() <= 1.0 + 1e-5
    assert not np.array_equal(a, masks.perlin_noise(shape, res, np.random.default_rng(4)))


def test_perlin_noise_is_zero_on_lattice_points():
    # gradient noise vanishes at lattice corners: a property of the construction, not of the seed
    n = masks.perlin_noise((64, 64), (4, 4), np.random.default_rng(0))
    assert np.allclose(n[::16, ::16], 0, atol=1e-6)
    assert n.std() > 0.05


def test_perlin_mask_nonempty_in_foreground_and_deterministic():
    fg = ring()
    for seed in range(10):
        m = masks.perlin_mask(fg.shape, np.random.default_rng(seed), foreground=fg)
        assert m.dtype == bool and m.any() and not (m & ~fg).any()
    assert np.array_equal(masks.perlin_mask((50, 60), np.random.default_rng(1)),
                          masks.perlin_mask((50, 60), np.random.default_rng(1)))


def test_perlin_mask_gives_up_with_clear_error():
    with pytest.raises(DefectlabError, match="perlin_mask"):
        masks.perlin_mask((32, 32), np.random.default_rng(0), threshold=5.0, max_tries=3)
    with pytest.raises(DefectlabError, match="empty"):
        masks.perlin_mask((32, 32), np.random.default_rng(0), foreground=np.zeros((32, 32), bool))
    with pytest.raises(DefectlabError, match="size"):
        masks.perlin_mask((32, 32), np.random.default_rng(0), foreground=np.ones((31, 32), bool))


def test_cutpaste_rect_geometry():
    shape = (80, 120)
    for seed in range(20):
        g = masks.cutpaste_rect(shape, np.random.default_rng(seed))
        (sy, sx, h, w), (y, x, dh, dw) = g.src_box, g.dst_box
        assert (h, w) == (dh, dw) == g.patch_mask.shape
        assert 0 <= sy and sy + h <= 80 and 0 <= sx and sx + w <= 120 and y + h <= 80 and x + w <= 120
        assert 0.02 * 0.8 <= h * w / (80 * 120) <= 0.15 * 1.2  # rounding of the sides
        assert g.full_mask(shape).sum() == h * w


def test_cutpaste_scar_sizes_and_foreground():
    fg = ring()
    for seed in range(20):
        g = masks.cutpaste_scar(fg.shape, np.random.default_rng(seed), foreground=fg)
        assert 2 <= g.src_box[3] <= 16 and 10 <= g.src_box[2] <= 25
        full = g.full_mask(fg.shape)
        assert full.any() and not (full & ~fg).any()
        assert g.transform.shape == (2, 3)


@pytest.mark.parametrize("fn", [masks.bezier_scar, masks.bezier_clump])
def test_bezier_shapes(fn):
    fg = ring()
    ms = [fn(fg.shape, np.random.default_rng(s), foreground=fg) for s in range(10)]
    assert all(m.any() and not (m & ~fg).any() for m in ms)
    assert np.array_equal(ms[0], fn(fg.shape, np.random.default_rng(0), foreground=fg))
    assert len({m.tobytes() for m in ms}) == 10


def test_bezier_clump_is_a_filled_blob():
    from scipy import ndimage

    m = masks.bezier_clump((100, 100), np.random.default_rng(0), radius=(0.2, 0.2))
    assert ndimage.label(m)[1] == 1
    assert np.array_equal(ndimage.binary_fill_holes(m), m)


def test_affine_jitter_place_inside_foreground_and_transform_moves_content():
    rng = np.random.default_rng(0)
    src = np.zeros((60, 60), bool)
    src[20:30, 25:45] = True
    fg = ring((90, 110))
    for _ in range(5):
        placed, m = masks.affine_jitter_place(src, fg, rng)
        assert placed.shape == fg.shape and placed.any() and not (placed & ~fg).any()
        assert 0.85 ** 2 * 0.8 <= placed.sum() / src.sum() <= 1.15 ** 2 * 1.2
        moved = cv2.warpAffine(src.astype(np.uint8), m, (110, 90), flags=cv2.INTER_NEAREST) > 0
        assert np.array_equal(moved, placed)  # the same transform moves image content onto the mask


def test_affine_jitter_place_fails_clearly_or_clips():
    big = np.ones((40, 40), bool)
    fg = np.zeros((50, 50), bool)
    fg[20:30, 20:30] = True
    with pytest.raises(DefectlabError, match="could not place"):
        masks.affine_jitter_place(big, fg, np.random.default_rng(0), max_tries=5)
    placed, _ = masks.affine_jitter_place(big, fg, np.random.default_rng(0), max_tries=5, on_fail="clip")
    assert placed.any() and not (placed & ~fg).any()


def test_trimap_values():
    fg = ring()
    d = np.zeros_like(fg)
    d[35, 20:25] = True
    t = masks.trimap(fg, d)
    assert t.dtype == np.uint8 and set(np.unique(t)) == {0, 127, 255}
    assert (t[d] == 255).all() and (t[~fg & ~d] == 0).all() and (t[fg & ~d] == 127).all()


def test_dilate_on_latent_grid():
    m = np.zeros((30, 41), bool)
    m[9, 17] = True  # cell (1, 2)
    g = masks.dilate_on_latent_grid(m, factor=8, kernel=1)
    assert g.shape == (4, 6) and g.sum() == 1 and g[1, 2]
    g5 = masks.dilate_on_latent_grid(m, factor=8, kernel=5)
    assert g5.sum() == 4 * 5 and g5[0:4, 0:5].all()  # 5x5 square, clipped by the top border
    up = masks.upsample_latent_mask(g, m.shape)
    assert up.shape == m.shape and (up | ~m).all() and up.sum() == 64


def test_gallery_panels():
    fg = ring((64, 72))
    panels, names = masks.gallery((64, 72), np.random.default_rng(0), foreground=fg)
    assert len(panels) == len(names) >= 8 and all(p.shape == (64, 72, 3) for p in panels)
    for panel, name in zip(panels[:6], names):  # the mask generators: a non-empty 0/1 mask inside the foreground
        assert set(np.unique(panel)) == {0.0, 1.0} and not (panel[..., 0] > 0)[~fg].any(), name


def test_affine_jitter_place_clip_shrinks_a_mask_from_a_larger_image():
    """Magnetic Tile images differ in size: a defect mask from a big image must still land in a small one."""
    big = np.zeros((400, 400), bool)
    big[20:380, 30:370] = True
    fg = np.ones((100, 120), bool)
    with pytest.raises(DefectlabError, match="could not place"):
        masks.affine_jitter_place(big, fg, np.random.default_rng(0))
    placed, _ = masks.affine_jitter_place(big, fg, np.random.default_rng(0), on_fail="clip")
    assert placed.shape == (100, 120) and placed.sum() > 0.3 * fg.sum()
