"""Generic inference on crop boxes (Kneron PLUS's KL520DemoGenericInferenceCrop):
one RGBA8888 photo, two boxes, one result per box; the KL520's default
channel ordering (HCW) applies to its raw output.

    python docs/examples/kp_generic_inference_crop.py [--model model.bin]
"""
import argparse

from kp_data import binary_path, photo, to_rgba8888, top

from runtime import kp


def main() -> None:
    parser = argparse.ArgumentParser(description="KL520 generic inference of two crops of an RGBA8888 image")
    parser.add_argument("-m", "--model", help="a Tessera binary (default: a tiny built-in ResNet-10)")
    args = parser.parse_args()
    model_path = binary_path(args.model)

    kp.core.simulate_devices(count=1, chip="KL520")
    device_group = kp.core.connect_devices(usb_port_ids=[1])
    kp.core.load_firmware_from_file(device_group, "fw_scpu.bin", "fw_ncpu.bin")  # ignored: a simulated device
    model_nef_descriptor = kp.core.load_model_from_file(device_group=device_group, file_path=model_path)

    image = to_rgba8888(photo("flower.jpg"))
    crop_boxes = [kp.InferenceCropBox(crop_box_index=0, x=0, y=0, width=320, height=320),
                  kp.InferenceCropBox(crop_box_index=1, x=200, y=100, width=256, height=256)]
    header = kp.GenericRawImageHeader(model_id=model_nef_descriptor.models[0].id, inference_number=0,
                                      inference_crop_box_list=crop_boxes)
    kp.inference.generic_raw_inference_send(device_group=device_group, generic_raw_image_header=header,
                                            image=image, image_format=kp.ImageFormat.KP_IMAGE_FORMAT_RGBA8888)
    print(f"[Crop] {header.crop_count} crop boxes sent")
    for _ in range(header.crop_count):
        result = kp.inference.generic_raw_inference_receive(device_group=device_group, generic_raw_image_header=header,
                                                            model_nef_descriptor=model_nef_descriptor)
        box = crop_boxes[result.header.crop_number]
        node = kp.inference.generic_inference_retrieve_float_node(
            node_idx=0, generic_raw_result=result, channels_ordering=kp.ChannelOrdering.KP_CHANNEL_ORDERING_DEFAULT)
        print(f"crop {result.header.crop_number} ({box.x}, {box.y}, {box.width}x{box.height}): "
              f"inference {result.header.inference_number}, top classes {top(node.ndarray)}")
    kp.core.disconnect_devices(device_group=device_group)


if __name__ == "__main__":
    main()
