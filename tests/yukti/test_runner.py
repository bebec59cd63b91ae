"""The Runner base class: declared options (validated once), the reuse key, RunnerInfo, capabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest

import yukti
from yukti.chooser import _requested_options
from yukti.engine import _options_for
from yukti.options import Option, OptionError, string_list
from yukti.runner import Capability, CapabilityError, Runner, RunnerInfo


class _Declared(Runner):
    name = "declared_test"
    options = {
        "threads": Option(1, type=int, minimum=1, artifact=False),
        "mode": Option("fast", choices=("fast", "exact")),
        "scale": Option(1.0, type=float, minimum=0.0, maximum=10.0),
        "flags": Option((), check=string_list),
        "label": Option(None, type=str, nullable=True),
    }

    def _prepare(self, model, **options):
        self.seen = options
        return {"build_s": 2.5, "cache_hit": True, "artifact_bytes": 7, "tile": 8}

    def _run(self, arrays):
        return [arrays[0][:, :5] * self.seen["scale"]]


class _Plain(Runner):
    """The older declaration: a plain {name: default} dict, accepted as it is."""

    name = "plain_test"
    default_options = {"anything": [1, 2]}

    def _prepare(self, model, **options):
        return {"compile_s": 0.5}

    def _run(self, arrays):
        return [arrays[0][:, :5]]


def test_defaults_are_a_read_only_view_of_the_declarations():
    assert _Declared.default_options == {"threads": 1, "mode": "fast", "scale": 1.0, "flags": (), "label": None}
    with pytest.raises(TypeError):
        _Declared.default_options["mode"] = "exact"  # type: ignore[index]


@pytest.mark.parametrize(("given", "message"), [
    ({"mode": "slow"}, r"backend 'declared_test' option mode must be one of \['fast', 'exact'\]; got 'slow'"),
    ({"threads": 0}, r"option threads must be an integer >= 1; got 0"),
    ({"threads": True}, r"option threads must be an integer >= 1; got True"),
    ({"threads": 2.0}, r"option threads must be an integer"),
    ({"scale": 11}, r"option scale must be a finite number >= 0.0 <= 10.0; got 11"),
    ({"scale": float("nan")}, r"option scale must be a finite number"),
    ({"flags": "-O2"}, r"option flags must be a list of strings; got '-O2'"),
    ({"label": 3}, r"option label must be a string \(or None\); got 3"),
])
def test_bad_values_name_the_backend_the_option_and_what_is_allowed(given, message):
    with pytest.raises(OptionError, match=message):
        _Declared.resolve_options(given)


def test_unknown_names_list_the_allowed_ones():
    with pytest.raises(yukti.UnknownNameError, match=r"has no option\(s\) \['mdoe'\]; options are \['check_finite', 'flags', 'label'"):
        _Declared.resolve_options({"mdoe": "fast"})


def test_values_are_normalised_to_plain_python():
    resolved = _Declared.resolve_options({"threads": np.int64(3), "scale": 2, "flags": ["-g"]})
    assert resolved == {"threads": 3, "mode": "fast", "scale": 2.0, "flags": ("-g",), "label": None}
    assert type(resolved["threads"]) is int and type(resolved["scale"]) is float


def test_one_reuse_key_for_prepare_engine_and_chooser(jet_dnn):
    """The options a prepared runner records are the ones the engine passes and the chooser looks up."""
    given = {"mode": "exact", "check_finite": False}
    run = _Declared().prepare(jet_dnn, **_options_for(_Declared, 4, given))
    assert run.info.options == run.options == _requested_options(_Declared, 4, given) == _Declared.resolve_options(given, threads=4)
    assert run.options["threads"] == 4 and "check_finite" not in run.options  # common options are no part of the key
    assert run._check_finite is False
    assert _Declared.resolve_options({"threads": 2}, threads=8)["threads"] == 2  # an explicit value wins


def test_plain_default_options_are_wrapped_without_constraints(jet_dnn):
    assert _Plain.options["anything"] == Option([1, 2])
    run = _Plain().prepare(jet_dnn, anything="no type is checked")
    assert run.info.options == {"anything": "no type is checked"}
    with pytest.raises(yukti.UnknownNameError):
        _Plain().prepare(jet_dnn, other=1)


def test_declaring_both_forms_is_refused():
    with pytest.raises(TypeError, match="both `options` and `default_options`"):
        type("Both", (Runner,), {"name": "both", "options": {}, "default_options": {}})


def test_info_fields_have_fixed_meanings_and_read_as_a_mapping(jet_dnn):
    run = _Declared().prepare(jet_dnn)
    info = run.info
    assert isinstance(info, RunnerInfo)
    assert (info.build_s, info.cache_hit, info.artifact_bytes, info.artifact_path) == (2.5, True, 7, None)
    assert info.extra == {"tile": 8}  # backend facts beyond the fields
    assert info["tile"] == 8 and info.get("nothing") is None and "tile" in info and "nothing" not in info
    assert info["compile_s"] == 2.5  # the older name of build_s
    assert dict(info)["backend"] == "declared_test" and set(dict(info)) >= {"prepare_s", "build_s", "tile"}
    json.dumps(info.options)  # stored as JSON in the results
    with pytest.raises(AttributeError):
        info.prepare_s = 0.0  # type: ignore[misc]
    assert _Plain().prepare(jet_dnn).info.build_s == 0.5  # a runner returning compile_s fills build_s


def test_nothing_built_means_none(jet_dnn):
    info = yukti.runner("onnxruntime", jet_dnn).info
    assert info.build_s is None and info.cache_hit is None and "compile_s" not in info


def test_capabilities_are_declared_and_absent_ones_refuse(jet_dnn, tmp_path):
    assert yukti.runner_class("cpp").has(Capability.EXPORT | Capability.NATIVE_TIMING | Capability.COLUMNS)
    assert _Declared.capabilities == Capability.NONE
    run = _Declared().prepare(jet_dnn)
    with pytest.raises(CapabilityError, match="no native timing"):
        run.time_native([jet_dnn.data.X[:1]], 10)
    with pytest.raises(CapabilityError, match="no standalone export"):
        _Declared.export(jet_dnn, tmp_path)
    with pytest.raises(CapabilityError, match="no column input"):
        run.columns([np.zeros(3, np.float32)] * 16)
    with pytest.raises(TypeError, match="does not define time_native"):
        type("Liar", (Runner,), {"name": "liar", "capabilities": Capability.NATIVE_TIMING})
