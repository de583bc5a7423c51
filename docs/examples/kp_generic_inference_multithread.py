"""Send in one thread, receive in another (Kneron PLUS's
KL720DemoGenericInferenceMultiThread) on a group of two simulated devices:
YUYV frames of a panning camera, results back in inference-number order
whichever device ran them, then the profile statistics.

    python docs/examples/kp_generic_inference_multithread.py [--model model.bin] [--frames 16] [--drop]
"""
import argparse
import threading

from kp_data import binary_path, photo, to_yuyv, top

from runtime import kp


def main() -> None:
    parser = argparse.ArgumentParser(description="Two devices, a send thread and a receive thread")
    parser.add_argument("-m", "--model", help="a Tessera binary (default: a tiny built-in ResNet-10)")
    parser.add_argument("-n", "--frames", type=int, default=16, help="frames to send")
    parser.add_argument("--drop", action="store_true", help="enable frame drop (never block a send)")
    args = parser.parse_args()
    model_path = binary_path(args.model)

    kp.core.simulate_devices(count=2, chip="KL720")
    ports = [d.usb_port_id for d in kp.core.scan_devices().device_descriptor_list]
    device_group = kp.core.connect_devices(usb_port_ids=ports)
    kp.core.set_timeout(device_group, 10000)
    kp.inference.set_inference_configuration(device_group, kp.InferenceConfiguration(enable_frame_drop=args.drop))
    model_nef_descriptor = kp.core.load_model_from_file(device_group=device_group, file_path=model_path)
    kp.inference.profile_set_enable(device_group, True)
    print(f"[Devices] ports {ports}")

    scene = photo("china.jpg")
    frames = [to_yuyv(scene[:320, 10 * i:10 * i + 320]) for i in range(args.frames)]
    header = kp.GenericRawImageHeader(model_id=model_nef_descriptor.models[0].id,
                                      padding_mode=kp.PaddingMode.KP_PADDING_SYMMETRIC)
    received = []

    def send() -> None:
        for number, frame in enumerate(frames):
            header.inference_number = number
            kp.inference.generic_raw_inference_send(device_group, header, frame, kp.ImageFormat.KP_IMAGE_FORMAT_YUYV)

    def receive() -> None:
        while len(received) < len(frames) - device_group.queue.dropped:
            try:
                result = kp.inference.generic_raw_inference_receive(device_group, header, model_nef_descriptor)
            except kp.ApiKPException as exc:
                print(f"receive stopped: {exc}")
                return
            received.append(result)

    threads = [threading.Thread(target=send), threading.Thread(target=receive)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in received:
        node = kp.inference.generic_inference_retrieve_float_node(0, result, kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW)
        print(f"frame {result.header.inference_number} on device {result.raw_result.device_port}: "
              f"top classes {top(node.ndarray, 1)}")
    for stats in kp.inference.profile_get_statistics(device_group).model_statistic_list:
        print(f"[Profile] model {stats.model_id}: {stats.inference_count} inferences, "
              f"avg pre-process {stats.avg_pre_process_ms:.3f} ms, avg inference {stats.avg_inference_ms:.4f} ms, "
              f"avg cpu op {stats.avg_cpu_op_ms:.3f} ms, avg post-process {stats.avg_post_process_ms:.3f} ms")
    kp.core.disconnect_devices(device_group)


if __name__ == "__main__":
    main()
