import os

import pytest

from config import CONFIGS, apply_overrides, config_table, load_config


def test_every_config_loads_and_prints():
    for number in CONFIGS:
        cfg = load_config(number)
        table = config_table(cfg)
        assert cfg.name in table and "test_cfg.score_thr" in table


@pytest.mark.parametrize("number, stacked, seg, kernel, test_size, train_max, top_range", [
    (0, 4, 512, 256, (800, 1333), 1333, (384, 2048)),
    (1, 2, 256, 128, (448, 768), 768, (224, 896)),
    (2, 3, 256, 128, (512, 852), 852, (256, 2048)),
    (3, 3, 256, 128, (512, 852), 852, (384, 2048)),
])
def test_reference_values(number, stacked, seg, kernel, test_size, train_max, top_range):
    cfg = load_config(number)
    assert (cfg.head_stacked_convs, cfg.head_seg_feat_channels) == (stacked, seg)
    assert cfg.mask_feat_channels == kernel and cfg.mask_feat_mid_channels == 128
    assert cfg.test_size == test_size and cfg.train_max_size == train_max
    assert cfg.scale_ranges[-1] == top_range
    assert cfg.num_grids == (40, 36, 24, 16, 12) and cfg.strides == (8, 8, 16, 32, 32)
    t = cfg.test_cfg
    assert (t.score_thr, t.mask_thr, t.nms_pre) == (0.1, 0.5, 500)
    assert (t.update_thr, t.max_per_img) == (0.05, 100)
    assert (t.nms_kernel, t.nms_sigma) == ("gaussian", 2.0)
    assert cfg.pixel_mean == (123.675, 116.28, 103.53) and cfg.pixel_std == (58.395, 57.12, 57.375)


def test_architecture_switches():
    assert load_config(0).backbone_variant == "b" and load_config(0).backbone_dcn_stages == ()
    c2 = load_config(2)
    assert c2.backbone_variant == "d" and c2.backbone_dcn_stages == (3, 4, 5)
    assert c2.head_dcn_convs == (2,) and not c2.head_dcn_bias and c2.drop_block
    c3 = load_config(3)
    assert c3.mask_feat_dcn and c3.head_dcn_bias


def test_default_is_config_2():
    assert load_config().name == "solov2_light_r50_vd_fpn_dcn_512_3x"


def test_overrides_are_cast_to_the_field_type():
    cfg = load_config(2, ["num_classes=3", "test_cfg.score_thr=0.2", "test_size=(256, 416)",
                          "test_cfg.model_path=my.pdparams", "train_cfg.ema=false",
                          "train_cfg.grad_clip=10", "classes_path=data/x.txt"])
    assert cfg.num_classes == 3 and isinstance(cfg.num_classes, int)
    assert cfg.test_cfg.score_thr == 0.2
    assert cfg.test_size == (256, 416)
    assert cfg.test_cfg.model_path == "my.pdparams"
    assert cfg.train_cfg.ema is False
    assert cfg.train_cfg.grad_clip == 10
    assert cfg.classes_path == "data/x.txt"


def test_override_errors_are_clear():
    with pytest.raises(ValueError, match="did you mean num_classes"):
        load_config(2, ["num_clases=3"])
    with pytest.raises(ValueError, match="key=value"):
        load_config(2, ["num_classes"])
    with pytest.raises(ValueError, match="integer"):
        load_config(2, ["num_classes=2.5"])
    with pytest.raises(ValueError, match="true/false"):
        load_config(2, ["train_cfg.ema=maybe"])
    with pytest.raises(ValueError, match="does not exist"):
        load_config(7)


def test_overrides_do_not_leak_between_loads():
    apply_overrides(load_config(0), ["num_classes=5"])
    assert load_config(0).num_classes == 80


def test_catalogue_names_each_file_once_and_converters_exist():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for number, config in CONFIGS.items():
        for entry in config.published:
            assert os.path.isfile(os.path.join(root, entry.converter)), entry.converter
            assert entry.role in ("model", "backbone") and entry.url.startswith("https://")
    defaults = {n: load_config(n).model_path for n in CONFIGS}
    assert defaults == {0: "dygraph_solov2_r50_fpn_8gpu_3x.pdparams",
                        1: "dygraph_solov2_light_448_r50_fpn_8gpu_3x.pdparams",
                        2: "dygraph_solov2_light_r50_vd_fpn_dcn_512_3x.pdparams",
                        3: "dygraph_solov2_r50_enhance_coco.pdparams",
                        4: "output/solov2_light_shapes_tour/model_final.pdparams"}
    # Every published file has its own output name; configs 2 and 3 share one backbone.
    entries = {e for c in CONFIGS.values() for e in c.published}
    assert len({e.output for e in entries}) == len({e.file for e in entries}) == len(entries)
    assert load_config(2).published_backbone() is load_config(3).published_backbone()
    assert load_config(2).train_cfg.model_path == "dygraph_r50vd_ssld.pdparams"
    assert load_config(0).published_backbone() is None


def test_stages_share_model_path_unless_they_set_their_own():
    cfg = load_config(2, ["model_path=mine.pdparams"])
    assert cfg.test_cfg.model_path == cfg.eval_cfg.model_path == "mine.pdparams"
    cfg = load_config(2, ["model_path=mine.pdparams", "eval_cfg.model_path=other.pdparams"])
    assert cfg.test_cfg.model_path == "mine.pdparams"
    assert cfg.eval_cfg.model_path == "other.pdparams"
    assert load_config(4).test_cfg.model_path.endswith("model_final.pdparams")
