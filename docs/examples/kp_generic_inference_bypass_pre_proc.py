"""Generic inference bypassing the hardware pre-processing (Kneron PLUS's
KL720DemoGenericInferenceBypassPreProc / GenericDataInference): the host
resizes, normalises and quantizes the photo with the input node's radix,
scale and zero point, and reads the output as fixed point.

    python docs/examples/kp_generic_inference_bypass_pre_proc.py [--model model.bin]
"""
import argparse

import numpy as np
from kp_data import binary_path, photos

from runtime import kp


def main() -> None:
    parser = argparse.ArgumentParser(description="Bypass pre-processing: a quantized buffer in, fixed point out")
    parser.add_argument("-m", "--model", help="a Tessera binary (default: a tiny built-in ResNet-10)")
    args = parser.parse_args()
    model_path = binary_path(args.model)

    device_group = kp.core.connect_devices(usb_port_ids=[1])
    model_nef_descriptor = kp.core.load_model_from_file(device_group=device_group, file_path=model_path)
    input_node = model_nef_descriptor.models[0].input_nodes[0]
    quant = input_node.quantization_parameters.quantized_fixed_point_descriptor_list[0]
    print(f"[Input] {input_node.name} {input_node.shape_npu} {input_node.data_layout.name}: "
          f"radix {quant.radix}, scale {float(quant.scale):.6f}, zero point {quant.zero_point}")

    _, _, height, width = input_node.shape
    rgb = np.asarray(photos()["china.jpg"].resize((width, height)), np.float64)
    normalized = rgb.transpose(2, 0, 1)[None] / 256 - 0.5
    fixed = np.rint(normalized * float(quant.scale) * 2 ** quant.radix) + quant.zero_point
    buffer = np.clip(fixed, -128, 127).astype(np.int8).tobytes()

    header = kp.GenericRawBypassPreProcImageHeader(model_id=model_nef_descriptor.models[0].id,
                                                   inference_number=0, image_buffer_size=len(buffer))
    kp.inference.generic_raw_inference_bypass_pre_proc_send(device_group=device_group,
                                                            generic_raw_image_header=header, image_buffer=buffer)
    result = kp.inference.generic_raw_inference_bypass_pre_proc_receive(
        device_group=device_group, generic_raw_image_header=header, model_nef_descriptor=model_nef_descriptor)
    for node_idx in range(result.header.num_output_node):
        ordering = kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW
        fixed_node = kp.inference.generic_inference_retrieve_fixed_node(node_idx, result, ordering)
        float_node = kp.inference.generic_inference_retrieve_float_node(node_idx, result, ordering)
        error = np.abs(fixed_node.ndarray / (fixed_node.scale * 2.0 ** fixed_node.radix) - float_node.ndarray).max()
        print(f"[Output {node_idx}] {fixed_node.name} {fixed_node.dtype.name} radix {fixed_node.radix} "
              f"scale {fixed_node.scale:.6f}: fixed {fixed_node.ndarray.reshape(-1)[:5].tolist()} ...")
        print(f" - max |float - fixed / (scale * 2^radix)| = {error:.3g}")
    kp.core.disconnect_devices(device_group=device_group)


if __name__ == "__main__":
    main()
