"""python -m bench's closing summary (bench/__main__.py): which printed
ratios meet their targets, judged at the median and in every round, in
each bench's row format, with a row's busy-core target under --loaded."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("bench_main", Path(__file__).parents[1] / "bench" / "__main__.py")
bench_main = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_main)
judge, summarise = bench_main.judge, bench_main.summarise

DEVICE = ("resnet50      Run_th ms / ORT fp32                           34.64       38.81  0.89/1.02/1.40  "
          "target <= 1 (quiet), 1.3 (one core busy); core link 70-789 ns")
SMALL = ("squeezenet      Run_sw / ORT int8 QDQ u8s8 ms         2.711       2.344    1.16/1.16/1.56  "
         "target <= 1.5; core link 69-730 ns")
THROUGHPUT = ("mobilenet_v2  IE CPU, 2 requests / ORT fp32                    218.0       189.5    0.97/1.04/1.18  "
              "target >= 1")


def test_each_bench_row_is_judged_against_its_own_target():
    assert judge(SMALL, False) == ("squeezenet Run_sw / ORT int8 QDQ u8s8 ms: 1.16/1.16/1.56, target <= 1.5",
                                   True, False)
    assert judge(THROUGHPUT, False) == ("mobilenet_v2 IE CPU, 2 requests / ORT fp32: 0.97/1.04/1.18, target >= 1",
                                        True, False)
    assert judge(DEVICE, False)[1:] == (False, False)
    assert judge(DEVICE, True) == ("resnet50 Run_th ms / ORT fp32: 0.89/1.02/1.4, target <= 1.3", True, False)


def test_rows_without_a_ratio_and_a_target_are_not_judged():
    assert judge("resnet50   compile s (import to binary)   8.88      target <= 10 s", False) is None
    assert judge("resnet50   Run_sw ms / ORT int8 QDQ s8s8   24.69   39.72  0.49/0.50/0.62  ; core link", False) is None
    assert judge("load average 0.14 1.22 1.92 on 2 cores", False) is None


def test_the_summary_counts_and_names_each_miss(capsys):
    summarise([("device", *judge(DEVICE, False)), ("small", *judge(SMALL, False)),
               ("throughput", *judge(THROUGHPUT, False))])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "== summary: 2 of 3 ratio targets met at the median, 0 in every round"
    assert out[1] == "   device: resnet50 Run_th ms / ORT fp32: 0.89/1.02/1.4, target <= 1: MISSED"
    assert out[2].endswith("target <= 1.5: met at the median, not in every round")
    assert len(out) == 4
