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
