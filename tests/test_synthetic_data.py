"""On-the-fly synthesis as a torch Dataset: determinism across workers, labels, weights, transforms, fitting."""
import numpy as np
import pytest

from defectlab import DefectlabError, Sample
from defectlab.data import Pool, SyntheticDefects, SyntheticStream, synthetic_loader

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SIZE = 32


def _goods(n=6, channels=3, seed=0):
    r = np.random.default_rng(seed)
    return [(0.4 + 0.2 * r.random((SIZE, SIZE, channels))).astype(np.float32) for _ in range(n)]


class DarkSquare:
    """A stand-in method: a dark square at a random place (image 0.0 exactly on the mask)."""

    name = "dark_square"

    def __init__(self, side=8):
        self.side = side

    def __call__(self, good, rng, *, foreground=None, mask=None):
        y, x = rng.integers(0, SIZE - self.side, 2)
        m = np.zeros(good.shape[:2], bool)
        m[y:y + self.side, x:x + self.side] = True
        img = good.copy()
        img[m] = 0.0
        return Sample(img, m, {"method": self.name, "y": int(y), "x": int(x)})


class Named(DarkSquare):
    def __init__(self, name):
        super().__init__()
        self.name = name


def _collect(loader):
    out = []
    for image, mask, label, meta in loader:
        out.append((image.numpy().tobytes(), mask.numpy().tobytes(), label.tolist(), meta["index"].tolist()))
    return out


def test_same_bytes_with_0_and_2_workers():
    data = SyntheticDefects(_goods(), {DarkSquare(): 1, "cutpaste": 1}, p_good=0.3, seed=7, length=16)
    runs = [_collect(synthetic_loader(data, 4, np.random.default_rng(1), workers=w)) for w in (0, 2)]
    assert runs[0] == runs[1]
    assert sorted(i for batch in runs[0] for i in batch[3]) == list(range(16))  # a permutation of the items
    other = _collect(synthetic_loader(data, 4, np.random.default_rng(2), workers=0))
    assert other != runs[0]


def test_items_depend_on_seed_epoch_index_only():
    data = SyntheticDefects(_goods(), DarkSquare(), p_good=0.0, seed=3)
    a = [data[i][0].numpy().tobytes() for i in (5, 0, 2)]
    b = [data[i][0].numpy().tobytes() for i in (5, 0, 2)]  # asked again, any order
    assert a == b and len(set(a)) == 3
    data.set_epoch(1)
    assert data[5][0].numpy().tobytes() != a[0]
    assert data.item(5, good=5, epoch=0)[0].numpy().tobytes() == a[0]
    other_seed = SyntheticDefects(_goods(), DarkSquare(), p_good=0.0, seed=4)
    assert other_seed[5][0].numpy().tobytes() != a[0]
    before = torch.random.get_rng_state()
    data[1]
    assert torch.equal(before, torch.random.get_rng_state())  # no global torch state touched


def test_stream_is_the_same_with_0_and_2_workers():
    data = SyntheticDefects(_goods(), DarkSquare(), p_good=0.5, seed=1)
    stream = SyntheticStream(data, batch_size=3, stop=12)
    runs = [_collect(DataLoader(stream, batch_size=3, num_workers=w)) for w in (0, 2)]
    assert runs[0] == runs[1]
    assert [i for batch in runs[0] for i in batch[3]] == list(range(12))
    goods_used = {data.item(i)[3]["good"] for i in range(12)}
    assert len(goods_used) > 1  # the stream draws its good images


def test_labels_masks_and_good_items():
    goods = _goods(4)
    data = SyntheticDefects(goods, DarkSquare(), p_good=0.5, seed=0, length=40)
    labels = []
    for i in range(len(data)):
        image, mask, label, meta = data[i]
        assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32 and mask.shape == (SIZE, SIZE)
        assert int(label) == int(mask.any())
        if label == 0:
            assert meta["method"] == "" and np.array_equal(image.numpy().transpose(1, 2, 0), goods[i % 4])
        else:
            assert meta["method"] == "dark_square" and (image[:, mask.bool()] == 0).all()
        labels.append(int(label))
    assert 0 < sum(labels) < 40
    assert all(SyntheticDefects(goods, DarkSquare(), p_good=0.0)[i][2] == 1 for i in range(4))
    assert all(SyntheticDefects(goods, DarkSquare(), p_good=1.0)[i][2] == 0 for i in range(4))


def test_weights_are_honoured():
    data = SyntheticDefects(_goods(), {Named("a"): 3, Named("b"): 1, Named("never"): 0}, p_good=0.0, seed=0, length=800)
    names = [data[i][3]["method"] for i in range(len(data))]
    share_a = names.count("a") / len(names)
    assert "never" not in names
    assert abs(share_a - 0.75) < 0.06  # binomial sd ~0.015 at n=800


def test_transforms_keep_masks_aligned_and_are_deterministic():
    from torchvision import tv_tensors
    from torchvision.transforms import InterpolationMode, v2

    goods = _goods()
    plain = SyntheticDefects(goods, DarkSquare(), p_good=0.0, seed=2)
    flipped = SyntheticDefects(goods, DarkSquare(), p_good=0.0, seed=2, transform=v2.RandomHorizontalFlip(p=1.0))
    for i in range(3):
        assert torch.equal(flipped[i][0], plain[i][0].flip(-1))
        assert torch.equal(flipped[i][1], plain[i][1].flip(-1))
    rotate = v2.RandomRotation(180, interpolation=InterpolationMode.NEAREST, fill={tv_tensors.Image: 0.5, tv_tensors.Mask: 0})
    rotated = SyntheticDefects(goods, DarkSquare(side=10), p_good=0.0, seed=2, transform=rotate)
    for i in range(6):
        image, mask, label, _ = rotated[i]
        assert torch.equal(image.amin(0) == 0, mask.bool())  # the dark pixels are exactly the mask's
        assert torch.equal(rotated[i][0], image)  # the transform's draw is the item's own
    crop = v2.RandomCrop(4)  # a crop that misses the defect turns the item good
    cropped = SyntheticDefects(goods, DarkSquare(), p_good=0.0, seed=2, transform=crop, length=30)
    assert all(int(cropped[i][2]) == int(cropped[i][1].any()) for i in range(30))
    assert {int(cropped[i][2]) for i in range(30)} == {0, 1}


class Learned(DarkSquare):
    needs_fit = True
    fits = 0

    def __init__(self):
        super().__init__()
        self.fitted = False

    def fit(self, goods, defects, rng, *, foregrounds=None):
        type(self).fits += 1
        self.fitted, self.n_defects = True, len(defects)
        return self

    def __call__(self, good, rng, **kw):
        if not self.fitted:
            raise RuntimeError("not fitted")
        return super().__call__(good, rng, **kw)


def test_learned_methods_are_fitted_once_before_the_workers():
    Learned.fits = 0
    goods = _goods()
    method = Learned()
    data = SyntheticDefects(goods, method, p_good=0.0, defects=[DarkSquare()(goods[0], np.random.default_rng(0))])
    assert method.fitted and method.n_defects == 1 and Learned.fits == 1
    _collect(synthetic_loader(data, 2, np.random.default_rng(0), workers=2))
    assert Learned.fits == 1
    SyntheticDefects(goods, method)  # already fitted: left alone
    assert Learned.fits == 1


def test_sources_folder_records_and_pool(tmp_path):
    from defectlab.data import read_mvtec
    from defectlab.imageio import write_png

    folder = tmp_path / "goods"
    for i, g in enumerate(_goods(3)):
        write_png(folder / f"{i}.png", g)
    data = SyntheticDefects(folder, DarkSquare(), size=16, p_good=1.0)
    assert len(data) == 3 and data[0][0].shape == (3, 16, 16)
    grey = SyntheticDefects(folder, DarkSquare(), channels=1, p_good=0.0, preload=False)
    assert grey[1][0].shape == (1, SIZE, SIZE)
    assert SyntheticDefects(_goods(2), DarkSquare(), size=16, channels=1, preload=False)[1][0].shape == (1, 16, 16)

    root = tmp_path / "mvtec" / "thing"
    for i, g in enumerate(_goods(2)):
        write_png(root / "train" / "good" / f"{i}.png", g)
    s = DarkSquare()(_goods(1)[0], np.random.default_rng(0))
    write_png(root / "test" / "crack" / "0.png", s.image)
    write_png(root / "ground_truth" / "crack" / "0_mask.png", s.mask.astype(np.float32)[:, :, None])
    ds = read_mvtec(tmp_path / "mvtec")
    assert len(SyntheticDefects(ds.filter(split="train", label="good"), "cutpaste")) == 2
    with pytest.raises(DefectlabError, match="defective record"):
        SyntheticDefects(ds, "cutpaste")
    pool = SyntheticDefects(_goods(2), Pool([s]), p_good=0.0)
    assert np.array_equal(pool[0][1].numpy().astype(bool), s.mask)


def test_detector_trains_through_the_dataset_with_any_worker_count():
    from defectlab.detect import SegmentationDetector

    goods = _goods(6, channels=1)
    tiny = dict(steps=3, base_channels=4, depth=2, batch_size=4, num_threads=1)
    fits = [SegmentationDetector(loader_workers=w, **tiny).fit(goods, (), np.random.default_rng(0), synth=DarkSquare(),
                                                              show_progress=False) for w in (0, 2)]
    assert fits[0].losses == fits[1].losses


def test_errors_are_clear(tmp_path):
    goods = _goods(2)
    with pytest.raises(DefectlabError, match="p_good"):
        SyntheticDefects(goods, DarkSquare(), p_good=1.5)
    with pytest.raises(DefectlabError, match="weights"):
        SyntheticDefects(goods, [DarkSquare(), DarkSquare()], weights=[1, -1])
    with pytest.raises(DefectlabError, match="unknown synthesis method"):
        SyntheticDefects(goods, "no_such_method")
    with pytest.raises(DefectlabError, match="not found"):
        SyntheticDefects(tmp_path / "missing", DarkSquare())
    with pytest.raises(DefectlabError, match="foregrounds"):
        SyntheticDefects(goods, DarkSquare(), foregrounds=[np.ones((SIZE, SIZE), bool)])
    with pytest.raises(DefectlabError, match="perturbs features"):
        SyntheticDefects(goods, "simplenet")

    def nothing(good, rng, **kw):
        return Sample(good, np.zeros(good.shape[:2], bool))

    with pytest.raises(DefectlabError, match="no defect in 5 tries"):
        SyntheticDefects(goods, nothing, p_good=0.0)[0]
