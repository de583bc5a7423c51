"""Generic inference with hardware pre-processing (Kneron PLUS's
KL720DemoGenericInference): an RGB565 photo, resized, padded and normalised
by the (simulated) device, classified ten times.

    python docs/examples/kp_generic_inference.py [--model model.bin] [--port 1]
"""
import argparse

from kp_data import binary_path, photo, to_rgb565, top

from runtime import kp

LOOP_TIME = 10


def main() -> None:
    parser = argparse.ArgumentParser(description="KL720 generic inference of an RGB565 image")
    parser.add_argument("-m", "--model", help="a Tessera binary (default: a tiny built-in ResNet-10)")
    parser.add_argument("-p", "--port_id", type=int, default=1, help="USB port id of the device")
    args = parser.parse_args()
    model_path = binary_path(args.model)

    print("[Connect Device]")
    device_group = kp.core.connect_devices(usb_port_ids=[args.port_id])
    kp.core.set_timeout(device_group=device_group, milliseconds=5000)
    print(" - Success")

    print("[Upload Model]")
    model_nef_descriptor = kp.core.load_model_from_file(device_group=device_group, file_path=model_path)
    print(f" - Success: model id {model_nef_descriptor.models[0].id}, "
          f"input {model_nef_descriptor.models[0].input_nodes[0].shape}")

    image = photo("china.jpg")
    img_bgr565 = to_rgb565(image)
    generic_raw_image_header = kp.GenericRawImageHeader(
        model_id=model_nef_descriptor.models[0].id,
        resize_mode=kp.ResizeMode.KP_RESIZE_ENABLE,
        padding_mode=kp.PaddingMode.KP_PADDING_CORNER,
        normalize_mode=kp.NormalizeMode.KP_NORMALIZE_KNERON)

    print(f"[Starting Inference Work] {LOOP_TIME} times, image {image.shape[1]}x{image.shape[0]} RGB565")
    for index in range(LOOP_TIME):
        generic_raw_image_header.inference_number = index
        kp.inference.generic_raw_inference_send(device_group=device_group,
                                                generic_raw_image_header=generic_raw_image_header,
                                                image=img_bgr565, image_format=kp.ImageFormat.KP_IMAGE_FORMAT_RGB565)
        generic_raw_result = kp.inference.generic_raw_inference_receive(
            device_group=device_group, generic_raw_image_header=generic_raw_image_header,
            model_nef_descriptor=model_nef_descriptor)
        print(f" - inference {generic_raw_result.header.inference_number}: "
              f"{generic_raw_result.header.num_output_node} output node(s)")

    print("[Retrieve Inference Node Output]")
    for node_idx in range(generic_raw_result.header.num_output_node):
        node = kp.inference.generic_inference_retrieve_float_node(
            node_idx=node_idx, generic_raw_result=generic_raw_result,
            channels_ordering=kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW)
        print(f" - node {node_idx} {node.name} shape {node.shape}: top classes {top(node.ndarray)}")
    kp.core.disconnect_devices(device_group=device_group)


if __name__ == "__main__":
    main()
