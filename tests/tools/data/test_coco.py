import json

import pytest

from config import load_config
from tools.data.coco import AnnotationError, CocoSet, load_class_names, read_class_names
from tools.errors import ConfigError, MissingInputError


def write(path, data):
    path.write_text(json.dumps(data))
    return str(path)


def test_labels_follow_ascending_category_ids(tmp_path):
    ann = write(tmp_path / "a.json", {
        "images": [{"id": 7, "file_name": "x.jpg", "height": 4, "width": 5}],
        "categories": [{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}],
        "annotations": []})
    coco = CocoSet(ann, "imgs")
    assert coco.class_names == ["person", "toothbrush"]
    assert coco.label_of == {1: 0, 90: 1}
    assert coco.image_ids == [7] and coco.image_path(7).endswith("imgs/x.jpg")
    assert coco.annotations(7) == []
    coco.check_classes(2)
    with pytest.raises(AnnotationError, match="num_classes=2"):
        coco.check_classes(80)


def test_image_info_file_without_annotations(tmp_path):
    ann = write(tmp_path / "info.json", {
        "images": [{"id": 1, "file_name": "a.jpg", "height": 2, "width": 2}],
        "categories": [{"id": 3, "name": "car"}]})
    assert CocoSet(ann, ".").image_ids == [1]


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid json"),
    ('{"images": []}', "'categories'"),
    ('{"images": [], "categories": []}', "no categories"),
])
def test_broken_files_are_reported(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message):
        CocoSet(str(path), ".")


def test_missing_file(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        CocoSet(str(tmp_path / "none.json"), ".")


def test_class_names_file_errors_are_clear(tmp_path):
    cfg = load_config(4, [f"classes_path={tmp_path}"])
    with pytest.raises(MissingInputError, match="is not a file"):
        load_class_names(cfg)
    with pytest.raises(MissingInputError, match="does not exist"):
        load_class_names(load_config(4, [f"classes_path={tmp_path / 'none.txt'}"]))
    latin = tmp_path / "classes.txt"
    latin.write_bytes("caf\xe9\nthe\nrest\n".encode("latin1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_class_names(load_config(4, [f"classes_path={latin}"]))
    latin.write_text("circle\nsquare\n\n")
    with pytest.raises(ConfigError, match="lists 2 classes but num_classes=3"):
        load_class_names(load_config(4, [f"classes_path={latin}"]))
    latin.write_text("circle\n\nsquare\ntriangle\n")
    assert read_class_names(str(latin)) == ["circle", "square", "triangle"]


def coco_file(tmp_path, image_ids, ann_ids, crowd=False, name="set.json"):
    """One category; image ``image_ids[k]`` and annotation ``ann_ids[k]`` on it."""
    return write(tmp_path / name, {
        "images": [{"id": i, "file_name": f"{k}.jpg", "height": 20, "width": 20}
                   for k, i in enumerate(image_ids)],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": a, "image_id": i, "category_id": 1, "iscrowd": int(crowd),
                         "area": 16.0, "bbox": [2, 2, 4, 4],
                         "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6]]}
                        for a, i in zip(ann_ids, image_ids)]})


def test_repeated_image_ids_are_refused_by_name(tmp_path):
    # pycocotools would keep one image per id and hang the annotations of both on it.
    with pytest.raises(AnnotationError, match=r"1 image ids appear more than once \(3\)"):
        CocoSet(coco_file(tmp_path, [1, 3, 3], [1, 2, 3]), ".")


def test_repeated_annotation_ids_are_refused_with_a_count_and_the_first_few(tmp_path):
    ann_ids = [k // 2 + 1 for k in range(14)]  # 1, 1, 2, 2, ..., 7, 7
    with pytest.raises(AnnotationError) as caught:
        CocoSet(coco_file(tmp_path, list(range(1, 15)), ann_ids), ".")
    message = str(caught.value)
    assert "7 annotation ids appear more than once (1, 2, 3, 4, 5, ...)" in message
    assert "COCOeval" in message and "its own id" in message


def test_annotation_id_zero_is_refused(tmp_path):
    # COCOeval marks unmatched detections with gt id 0, so id 0 could never be matched.
    with pytest.raises(AnnotationError, match="annotation has id 0"):
        CocoSet(coco_file(tmp_path, [1, 2], [0, 1]), ".")
    assert CocoSet(coco_file(tmp_path, [0, 2], [1, 2]), ".").image_ids == [0, 2]


def test_a_set_without_annotations_to_score(tmp_path):
    scored = CocoSet(coco_file(tmp_path, [1, 2], [1, 2]), ".")
    scored.require_annotations()
    for path in (coco_file(tmp_path, [1, 2], [1, 2], crowd=True, name="crowd.json"),
                 coco_file(tmp_path, [1], [], name="none.json")):
        with pytest.raises(AnnotationError, match=f"{path} holds no annotations to score"):
            CocoSet(path, ".").require_annotations()


def test_no_annotation_file_at_all():
    with pytest.raises(AnnotationError, match="no annotation file given"):
        CocoSet(None, ".")
