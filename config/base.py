"""Every default of a SOLOv2 experiment, in one class you can read top to bottom.

A numbered config (``config/solov2_*.py``) subclasses :class:`SOLOv2Config` and changes only
the fields that differ. Fields are plain attributes; the three per-stage groups (``train_cfg``,
``eval_cfg``, ``test_cfg``) are :class:`Section` objects so that ``test_cfg.model_path=...`` on
the command line reads naturally. What each field may hold (type, range, allowed words) is
declared in config/checks.py and checked when a config is resolved.

Numbers come from the reference configs:
  [SOLO]   WXinlong/SOLO configs/solov2/solov2_r50_fpn_8gpu_3x.py and
           solov2_light_448_r50_fpn_8gpu_3x.py (mmdetection 1.0, PyTorch)
  [PD0.5]  PaddleDetection release/0.5 configs/solov2/solov2_light_r50_vd_fpn_dcn_512_3x.yml
           and solov2_light_reader.yml (static graph)
  [PD2]    PaddleDetection release/2.6 configs/solov2/solov2_r50_enhance_coco.yml
"""

import copy
from dataclasses import dataclass

from .checks import check_config


@dataclass(frozen=True)
class Published:
    """One published weight file: where it is downloaded from, which top-level
    ``1_*2paddle.py`` script converts it, and the file that script writes."""

    file: str
    url: str
    converter: str
    output: str
    # 'model': weights for demo / eval / export; 'backbone': ImageNet initial weights for
    # training (train_cfg.model_path).
    role: str = "model"
    # The folder the archive unpacks to, which the converter reads as well.
    unpacked: str | None = None


class Section:
    """A named group of fields, e.g. ``cfg.test_cfg.score_thr``."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def items(self):
        return self.__dict__.items()

    def update(self, **fields):
        unknown = set(fields) - set(self.__dict__)
        if unknown:
            raise KeyError(f"unknown fields {sorted(unknown)}")
        self.__dict__.update(fields)

    def __repr__(self):
        inner = ", ".join(f"{k}={v!r}" for k, v in self.items())
        return f"Section({inner})"


class SOLOv2Config:
    # Short name; converted weights and output folders are named after it.
    name = "solov2"
    # The number --config=N picks (config/__init__.py lists them); a config of your own that
    # joins that list sets its own, since a subclass inherits its parent's.
    number = None
    # The published weight files for this config, the default first (see Published).
    published = ()

    def __init__(self):
        # ------------------------------------------------------------------ model
        # Foreground classes. The reference configs say 81 because they count background;
        # the category branch has num_classes output channels (80 on COCO).
        self.num_classes = 80
        # ResNet-50 variant: 'b' puts the stride in the 3x3 conv (torchvision / mmdet
        # style='pytorch'); 'd' adds the 3-conv stem and the avg-pool shortcut (ResNet-vd).
        self.backbone_variant = "b"
        # Residual stages (2..5) whose 3x3 conv is a modulated deformable conv (DCNv2).
        self.backbone_dcn_stages = ()
        # Stages frozen in training: 1 = stem and res2 (mmdet frozen_stages=1,
        # PaddleDetection freeze_at=2 name the same thing).
        self.backbone_frozen_stages = 1
        # Backbone BatchNorm in training: 'affine' keeps the ImageNet statistics and trains
        # scale/shift (mmdet norm_eval=True); 'frozen' trains neither (PaddleDetection
        # freeze_norm); 'train' updates statistics too (SyncBN across GPUs).
        self.backbone_norm = "affine"
        # FPN width; P2-P5 from the backbone, P6 by stride-2 max-pool of P5 [SOLO].
        self.fpn_channels = 256
        # Kernel/category towers: depth, width, and which tower convs are DCNv2.
        self.head_stacked_convs = 4
        self.head_seg_feat_channels = 512
        self.head_dcn_convs = ()
        # Whether those head DCNs carry a bias: the static PaddleDetection code built them
        # without one, PaddleDetection 2.x with one.
        self.head_dcn_bias = False
        # Channels of the dynamic kernels = channels of the unified mask feature ("E").
        self.mask_feat_channels = 256
        # Mask feature head: width of its per-level towers, and DCNv2 in every conv [PD2].
        self.mask_feat_mid_channels = 128
        self.mask_feat_dcn = False
        # Grid size S per level and the stride used by the "mask area > stride" filter.
        self.num_grids = (40, 36, 24, 16, 12)
        self.strides = (8, 8, 16, 32, 32)
        # Instance scale ranges per level, in sqrt(w*h) pixels of the resized image [SOLO].
        self.scale_ranges = ((1, 96), (48, 192), (96, 384), (192, 768), (384, 2048))
        # Centre-region scale for target assignment (paper Sec. 3.2, sigma=0.2) [SOLO].
        self.sigma = 0.2
        # DropBlock (block 3, keep 0.9) before the last conv of both towers, training only.
        self.drop_block = False
        # Dice mean over 'all' positives [SOLO head.loss] or 'nonempty' targets [PD SOLOv2Loss].
        self.dice_average = "all"

        # ------------------------------------------------------------------ weights
        # The converted weight file demo.py, eval.py, test_dev.py and the export read:
        # what the converter of the config's first published model file writes.
        # test_cfg.model_path / eval_cfg.model_path override it for one stage; training
        # reads train_cfg.model_path (initial weights) instead.
        models = self.published_models()
        self.model_path = models[0].output if models else None

        # ------------------------------------------------------------------ data
        # RGB mean/std on 0..255 pixels (ImageNet statistics) [SOLO img_norm_cfg].
        self.pixel_mean = (123.675, 116.28, 103.53)
        self.pixel_std = (58.395, 57.12, 57.375)
        # How the reference implementation resized and normalized test images; decides
        # whether published weights reproduce their AP. One of
        #   'mmcv'         SOLO:  uint8 resize to explicit size (int(x*s+0.5)), then normalize
        #   'ppdet_static' PaddleDetection 0.5: uint8 cv2 resize with fx=fy=s, then normalize
        #   'ppdet2'       PaddleDetection 2.x: normalize first, then float resize fx=fy=s
        # 'auto' takes the style recorded in the converted weight file, else native_preprocess.
        self.preprocess = "auto"
        self.native_preprocess = "mmcv"
        # Test-time short side / long-side cap.
        self.test_size = (800, 1333)
        # Multi-scale training short sides and the long-side cap.
        self.train_sizes = (640, 672, 704, 736, 768, 800)
        self.train_max_size = 1333
        # Light configs add colour distortion and random crop to training [PD0.5 reader].
        self.train_color_distort = False
        self.train_random_crop = False
        # Dataset files. *_path: COCO-style annotation json; *_pre_path: image folder.
        self.train_path = "../COCO/annotations/instances_train2017.json"
        self.train_pre_path = "../COCO/train2017/"
        self.val_path = "../COCO/annotations/instances_val2017.json"
        self.val_pre_path = "../COCO/val2017/"
        self.test_path = "../COCO/annotations/image_info_test-dev2017.json"
        self.test_pre_path = "../COCO/test2017/"
        # One class name per line, in label order.
        self.classes_path = "data/coco_classes.txt"

        # ------------------------------------------------------------------ train
        self.train_cfg = Section(
            # Initial weights: a converted backbone, a converted full model, or None.
            model_path=None,
            # Images per GPU. Base LR 0.01 is for a total batch of 16 [SOLO: 8 GPUs x 2].
            batch_size=2,
            base_lr=0.01,
            base_batch_size=16,
            # Scale the LR linearly with the actual total batch (Goyal et al. 2017).
            scale_lr=True,
            momentum=0.9,
            weight_decay=1e-4,
            # Linear warm-up from warmup_ratio * lr over warmup_iters [SOLO lr_config].
            warmup_iters=500,
            warmup_ratio=0.01,
            # Step schedule in iterations at the base batch: [SOLO] trains 36 epochs and
            # decays x0.1 after epochs 27 and 33; COCO train2017 has 117266 images with
            # annotations, i.e. 7330 iterations per epoch at total batch 16.
            max_iters=36 * 7330,
            lr_milestones=(27 * 7330, 33 * 7330),
            lr_gamma=0.1,
            # Gradient clipping by global norm 35 [SOLO optimizer_config]; None disables.
            grad_clip=35.0,
            # Backbone LR multipliers per residual stage (res2..res5), PaddleDetection style.
            backbone_lr_mult=(1.0, 1.0, 1.0, 1.0),
            # L2 on the backbone BatchNorm scale/shift: mmdet's SGD decays every parameter
            # [SOLO]; PaddleDetection's ResNet sets norm_decay=0 [PD0.5, PD2].
            backbone_norm_decay=True,
            # Exponential moving average of the weights [PD0.5: use_ema, ema_decay].
            ema=False,
            ema_decay=0.9998,
            save_iter=10000,
            keep_checkpoints=3,
            eval_iter=20000,
            log_iter=20,
            num_workers=4,
            output_dir="output",
        )

        # ------------------------------------------------------------------ eval
        self.eval_cfg = Section(
            # None: the config's model_path.
            model_path=None,
            batch_size=1,
            # Where results json files go, so AP can be recomputed with --from-json.
            output_dir="eval_results",
        )

        # ------------------------------------------------------------------ test
        self.test_cfg = Section(
            # None: the config's model_path.
            model_path=None,
            # Post-processing [SOLO test_cfg]: category score threshold, mask binarisation
            # threshold, candidates kept before Matrix NMS, Matrix NMS kernel and sigma,
            # score threshold after NMS, detections kept per image.
            score_thr=0.1,
            mask_thr=0.5,
            nms_pre=500,
            nms_kernel="gaussian",
            nms_sigma=2.0,
            update_thr=0.05,
            max_per_img=100,
            # demo.py: draw detections at or above this score.
            draw_thresh=0.35,
            batch_size=1,
            input="images/test",
            output="images/res",
        )

    # --------------------------------------------------------------------- helpers
    def fields(self):
        """(dotted name, value) pairs in declaration order."""
        for key, value in self.__dict__.items():
            if isinstance(value, Section):
                for sub, sub_value in value.items():
                    yield f"{key}.{sub}", sub_value
            else:
                yield key, value

    def resolve(self):
        """Fill what is derived from other fields once overrides are applied (a stage
        without its own model_path uses the config's), then check every field against its
        rule in config/checks.py. Returns self; raises ConfigError for a value that does
        not fit."""
        for section in (self.test_cfg, self.eval_cfg):
            if section.model_path is None:
                section.model_path = self.model_path
        check_config(self)
        return self

    def published_models(self):
        """The published files that give this config's test / eval weights."""
        return [p for p in self.published if p.role == "model"]

    def published_backbone(self):
        """The published ImageNet backbone training starts from, or None."""
        return next((p for p in self.published if p.role == "backbone"), None)

    def copy(self):
        return copy.deepcopy(self)
