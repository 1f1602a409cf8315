"""The pretrained backbone is the real ImageNet network, checked and frozen."""
import numpy as np
import pytest
import torch

from defectlab import DefectlabError, backbone


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    image = getattr(data, name)().astype(np.float32) / 255
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    return torch.nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)


@pytest.mark.parametrize("photo, imagenet_class", [("chelsea", 285), ("coffee", 967)])  # Egyptian cat, espresso
def test_classifier_recognises_photos(photo, imagenet_class):
    with torch.no_grad():
        probs = backbone.imagenet_classifier()(_photo(photo)).softmax(-1)[0]
    assert int(probs.argmax()) == imagenet_class
    assert float(probs.max()) > 0.5


def test_features_are_multiscale_frozen_and_grey_equals_replicated_rgb():
    feats = backbone.pretrained_features(strides=(4, 8, 16))
    assert feats.channels == [24, 40, 112] and not feats.training
    assert not any(p.requires_grad for p in feats.parameters())
    grey = torch.rand(2, 1, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = feats(grey), feats(grey.expand(-1, 3, -1, -1))
    assert [t.shape[-2:] for t in a] == [(16, 24), (8, 12), (4, 6)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_weights_checksum_is_verified(monkeypatch):
    entry = backbone.PACKAGED["efficientnet-lite0"]
    monkeypatch.setitem(backbone.PACKAGED, "efficientnet-lite0",
                        backbone.PackagedWeights(entry.package, entry.cls, "0" * 64, entry.pip))
    with pytest.raises(DefectlabError, match="checksum mismatch"):
        backbone.weights_path("efficientnet-lite0")


def test_unknown_backbone_and_bad_spec_are_clear_errors():
    with pytest.raises(DefectlabError, match="unknown pretrained backbone"):
        backbone.load("vgg-nonexistent")
    with pytest.raises(DefectlabError, match="ARCH=WEIGHTS_FILE@SHA256"):
        backbone.load("resnet18=/nowhere.pth")
    with pytest.raises(DefectlabError, match="not found"):
        backbone.load("resnet18=/nowhere.pth@" + "0" * 64)
