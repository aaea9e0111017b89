"""The end-to-end `<name>` model of a version's Triton repository (Triton's python backend).

Copied as `<name>/1/model.py` beside `yolo_e2e.py`. Each call takes the requests Triton's
dynamic batcher gathered, decodes and letterboxes every image, runs the detector model of the
same repository once per chunk of at most its max batch (BLS), and answers each request with
boxes in its images' pixels. A request the model refuses (not an image, too many pixels, no
image) gets its own Triton error; the others in the same call are answered.

Inputs (each optional; one of IMAGE or PIXELS): IMAGE BYTES [1] (JPEG/PNG bytes or their
base64 text), PIXELS UINT8 [H,W,3] (RGB), CONF FP32 [1], IOU FP32 [1]. Outputs per image,
padded to the largest count in the request: BOXES FP32 [n,4] (x1,y1,x2,y2), SCORES FP32 [n],
CLASSES INT32 [n] (-1 = padding), NUM_DETECTIONS INT32 [1].
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils  # only inside Triton's python backend stub
import yolo_e2e


def _param(config: dict, key: str) -> str:
    return config["parameters"][key]["string_value"]


def _optional(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    """Triton's python-backend entry points (initialize, execute)."""

    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        self.detectors = _param(config, "detectors").split()
        self.detector = ""
        self.detector_input = _param(config, "detector_input")
        self.detector_output = _param(config, "detector_output")
        self.detector_batch = max(1, int(_param(config, "detector_max_batch")))
        self.head = _param(config, "head")
        self.imgsz = int(_param(config, "imgsz"))
        self.conf = float(_param(config, "conf"))
        self.iou = float(_param(config, "iou"))
        self.max_det = int(_param(config, "max_det"))
        self.max_pixels = int(_param(config, "max_pixels"))

    def _choose_detector(self) -> str:
        # Which detector KServe loaded (serving_format): the first ready of the list.
        if not self.detector:
            ready = [d for d in self.detectors if pb_utils.is_model_ready(d)]
            if not ready:
                raise pb_utils.TritonModelException(
                    f"none of the detector models {self.detectors} is loaded; load one of them "
                    "(--load-model) with this model")
            self.detector = ready[0]
        return self.detector

    def _images(self, request) -> list:
        encoded, pixels = _optional(request, "IMAGE"), _optional(request, "PIXELS")
        if (encoded is None) == (pixels is None):
            raise yolo_e2e.BadImage("send exactly one of the inputs IMAGE (encoded bytes) or "
                                    "PIXELS (uint8 HxWx3)")
        if encoded is not None:
            items = encoded.reshape(len(encoded), -1)
            if items.size == 0:
                raise yolo_e2e.BadImage("the request holds no image (empty batch)")
            return [yolo_e2e.decode_image(row[0], self.max_pixels) for row in items]
        if pixels.size == 0 or pixels.ndim != 4:
            raise yolo_e2e.BadImage("PIXELS must be a non-empty batch of HxWx3 uint8 images")
        for image in pixels:
            yolo_e2e.check_pixels(image, self.max_pixels)
        return [np.ascontiguousarray(image[..., ::-1]) for image in pixels]  # RGB -> BGR

    def _thresholds(self, request, count: int) -> tuple[list, list]:
        values = []
        for name, default in (("CONF", self.conf), ("IOU", self.iou)):
            given = _optional(request, name)
            value = np.full(count, default, np.float32) if given is None else \
                np.broadcast_to(given.reshape(-1), (count,)).astype(np.float32)
            if not np.all((value >= 0) & (value <= 1)):
                raise yolo_e2e.BadImage(f"{name} must lie in [0, 1], got {value.tolist()}")
            values.append(value.tolist())
        return values[0], values[1]

    def _detect(self, tensors: list) -> list:
        outputs = []
        for start in range(0, len(tensors), self.detector_batch):
            batch = np.stack(tensors[start:start + self.detector_batch])
            response = pb_utils.InferenceRequest(
                model_name=self._choose_detector(),
                requested_output_names=[self.detector_output],
                inputs=[pb_utils.Tensor(self.detector_input, batch)]).exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            outputs.extend(pb_utils.get_output_tensor_by_name(
                response, self.detector_output).as_numpy())
        return outputs

    def execute(self, requests: list) -> list:
        jobs, errors = [], {}
        for index, request in enumerate(requests):
            try:
                images = self._images(request)
                confs, ious = self._thresholds(request, len(images))
                jobs.append((index, images, confs, ious))
            except yolo_e2e.BadImage as exc:
                errors[index] = str(exc)
        tensors, transforms = [], []
        for _, images, _, _ in jobs:
            for image in images:
                tensor, transform = yolo_e2e.letterbox(image, self.imgsz)
                tensors.append(tensor)
                transforms.append(transform)
        outputs = self._detect(tensors) if tensors else []
        responses, cursor = {}, 0
        for index, images, confs, ious in jobs:
            count = len(images)
            found = yolo_e2e.detect_batch_heads(
                outputs[cursor:cursor + count], self.head, transforms[cursor:cursor + count],
                [image.shape[:2] for image in images], confs, ious, self.max_det)
            cursor += count
            responses[index] = pb_utils.InferenceResponse(_tensors(found))
        for index, message in errors.items():
            responses[index] = pb_utils.InferenceResponse(error=pb_utils.TritonError(
                message, pb_utils.TritonError.INVALID_ARG))  # HTTP 400, not 500
        return [responses[index] for index in range(len(requests))]


def _tensors(found: list) -> list:
    """Per-image detections padded to the request's largest count (a batch is one array)."""
    width = max((len(scores) for _, scores, _ in found), default=0)
    boxes = np.zeros((len(found), width, 4), np.float32)
    scores = np.zeros((len(found), width), np.float32)
    classes = np.full((len(found), width), -1, np.int32)
    for row, (b, s, c) in enumerate(found):
        boxes[row, :len(s)], scores[row, :len(s)], classes[row, :len(s)] = b, s, c
    counts = np.array([[len(s)] for _, s, _ in found], np.int32)
    return [pb_utils.Tensor("BOXES", boxes), pb_utils.Tensor("SCORES", scores),
            pb_utils.Tensor("CLASSES", classes), pb_utils.Tensor("NUM_DETECTIONS", counts)]
