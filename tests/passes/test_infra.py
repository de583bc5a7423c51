"""Pass infrastructure: passes, Sequential, PassContext, options, instruments."""
import numpy as np
import pytest

from ir import Graph, GraphBuilder
from passes.infra import PassContext, PassError, Sequential, get_pass, graph_pass, register_option
from passes.instruments import DumpIR, PassTiming, VerifyEachPass, timed

register_option("test.factor", int, 2, "used by the infrastructure tests")
calls: list[str] = []


@graph_pass(opt_level=1, name="test_record")
def record(graph, ctx):
    calls.append(f"record:{ctx.option('test.factor')}")
    return graph


@graph_pass(opt_level=3, name="test_expensive")
def expensive(graph, ctx):
    calls.append("expensive")
    return graph


@graph_pass(opt_level=0, name="test_needs_record", required=["test_record"])
def needs_record(graph, ctx):
    calls.append("needs_record")
    return graph


@graph_pass(opt_level=0, name="test_breaks_ir")
def breaks_ir(graph, ctx):
    graph.nodes[0].outputs[0].uses.clear()  # a stale use list
    return graph


@graph_pass(opt_level=0, name="test_crashes")
def crashes(graph, ctx):
    return {}["missing"]


@graph_pass(opt_level=0, name="test_returns_nothing")
def returns_nothing(graph, ctx):
    return None


def small_graph() -> Graph:
    b = GraphBuilder("small")
    x = b.input("x", [3])
    return b.build(b.Exp(b.Relu(x)))


@pytest.fixture(autouse=True)
def _clear_calls():
    calls.clear()


def test_opt_level_and_disabled_passes_decide_what_runs():
    with PassContext(opt_level=2):
        Sequential([record, expensive])(small_graph())
    assert calls == ["record:2"]
    calls.clear()
    with PassContext(opt_level=3, disabled=["test_record"]):
        Sequential([record, expensive])(small_graph())
    assert calls == ["expensive"]


def test_required_passes_run_first_and_once():
    with PassContext(opt_level=0, required=["test_record"]):
        Sequential([needs_record, needs_record])(small_graph())
    assert calls == ["record:2", "needs_record", "needs_record"]


def test_sequentials_nest_and_are_passes():
    inner = Sequential([record], name="inner")
    with PassContext(options={"test.factor": 5}):
        Sequential([inner, inner], name="outer")(small_graph())
    assert calls == ["record:5", "record:5"]


def test_options_are_declared_and_typed():
    with pytest.raises(PassError, match="unknown pass option 'test.factr'"):
        PassContext(options={"test.factr": 3})
    with pytest.raises(PassError, match="must be a int"):
        PassContext(options={"test.factor": "3"})
    assert PassContext().option("test.factor") == 2


def test_a_pass_that_breaks_the_ir_is_named():
    with PassContext(instruments=[VerifyEachPass()]):
        with pytest.raises(PassError, match="(?s)pass .test_breaks_ir. broke the IR:.*use list is stale"):
            breaks_ir(small_graph())


def test_a_crashing_pass_is_named():
    with pytest.raises(PassError, match="pass 'test_crashes' failed: KeyError"):
        crashes(small_graph())
    with pytest.raises(PassError, match="pass 'test_returns_nothing' returned NoneType"):
        returns_nothing(small_graph())


def test_timing_and_dumps(tmp_path):
    timing = PassTiming()
    with PassContext(instruments=[timing, DumpIR(tmp_path)]):
        Sequential([record], name="pipeline")(small_graph())
    assert [name for name, _ in timing.times] == ["test_record", "pipeline"]
    assert "test_record" in timing.render()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["001_pipeline_after.txt", "001_pipeline_before.txt", "002_test_record_after.txt",
                     "002_test_record_before.txt"]
    assert "Relu(%x)" in (tmp_path / files[0]).read_text()


def test_timing_records_stages_that_are_not_passes():
    timing = PassTiming()
    with PassContext(instruments=[timing]) as ctx:
        with timed("import"):
            pass
        ctx.record_time("calibration: float runs", 0.5)
        ctx.record_time("calibration: float runs", 0.25)
    with timed("write", [timing]):
        pass
    assert [name for name, _ in timing.times] == ["import", "calibration: float runs", "calibration: float runs",
                                                 "write"]
    assert timing.total("calibration: float runs") == 0.75
    with timed("outside any context"):  # no instruments: nothing to tell
        pass


def test_passes_are_found_by_name():
    assert get_pass("test_record") is record
    with pytest.raises(PassError, match="no pass named 'nope'"):
        get_pass("nope")


def test_passes_outside_a_context_run_in_a_default_one():
    graph = small_graph()
    assert record(graph) is graph and calls == ["record:2"]
    assert np.array_equal(graph.inputs[0].type.shape, (3,))


def test_a_pass_that_runs_the_graph_gets_the_contexts_lowering_or_says_it_needs_one():
    lowered = []

    @graph_pass(opt_level=0, name="test_runs_graph")
    def runs_graph(graph, ctx):
        lowered.append(ctx.lowering("test_runs_graph")(graph))
        return graph

    graph = Graph("g")
    with PassContext(lower=lambda g: ("program", {})):
        runs_graph(graph)
    assert lowered == [("program", {})]
    with PassContext(), pytest.raises(PassError, match="test_runs_graph runs the graph on the CPU kernels: give"):
        runs_graph(graph)
