"""Parameter handling of the tracker node (a mixin of :class:`~.node_core.TrackerRuntime`).

A parameter change that needs a new model (``tracker``, ``weights``, ``device``, ``half``,
``cuda_graphs``, ``backend``, ``threads``, ``tracker_params.*``) is built in the background while
frames keep flowing. Weights that cannot be loaded for the variant (missing, empty, corrupt, made
for another variant, keys that do not fit) make the set-parameters call fail with the reason; a
build that still fails sets the parameters back to the model that keeps running. After a load the
``tracker_params.*`` values are those of the running config (architecture options read off a
checkpoint included), so parameters name what runs.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.parameter import Parameter

from siam_tracking_ros.ros import params as P
from siam_tracking_ros.ros.given_parameters import GivenParameters, RefusedValueError
from siam_tracking_ros.ros.tracking_core import LostPolicy, ModelRequest, config_values, default_threads

#: seconds an init_target that switches the variant waits for the new model
SWITCH_TIMEOUT_S = 300.0
RELOAD_KEYS = frozenset(p.name for p in P.NODE_PARAMS if p.reloads)


class ParameterHandler:
    """Declares, validates and applies the node's parameters; expects ``node``, ``log``, ``engine``."""

    node: Any
    log: Any
    engine: Any
    configured: bool

    def _init_parameters(self) -> None:
        #: the values given at start (the node is built with declare_from_overrides)
        self.given = GivenParameters(self.node)
        self._internal = threading.local()  # set while the node itself (re)declares or syncs
        self._set_lock = threading.Lock()
        self._tracker_fields: set[str] = set()
        self._declare_node_params()

    def _param(self, name: str) -> Any:
        return self.node.get_parameter(name).value

    # --- declaration ----------------------------------------------------------------------------
    def _declare(self, name: str, default: Any, descriptor, check: Any = None) -> None:
        """Declare one parameter; a bad given value (type, range, ``check``) is logged, the default used."""
        try:
            self.given.declare(name, default, descriptor, check)
        except (InvalidParameterTypeException, InvalidParameterValueException, RefusedValueError) as exc:
            self.log.error(f"parameter {name}: {exc}; using the default {default!r}")
            self.given.declare_default(name, default, descriptor)

    def _declare_node_params(self) -> None:
        for definition in P.NODE_PARAMS:
            check = None if definition.reloads else P.validate_node_param
            self._declare(definition.name, definition.default, definition.descriptor(), check)

    def _declare_tracker_params(self, tracker: str, weights: str, config: Any = None) -> None:
        """Declare ``tracker_params.*`` of ``tracker`` (after undeclaring another variant's)."""
        with self._as_internal():
            for name in sorted(self._tracker_fields):
                self.node.undeclare_parameter(P.PREFIX + name)
            self._tracker_fields = set()
            try:
                config = config if config is not None else P.base_config(tracker, weights)
            except (KeyError, ValueError, TypeError) as exc:
                self.log.warning(f"no tracker_params for '{tracker}': {exc}")
                return
            for item in P.tracker_params(config):
                self._declare(item.name, item.value, item.descriptor)
                self._tracker_fields.add(item.field)
            self._warn_unknown_tracker_overrides(tracker)

    def _warn_unknown_tracker_overrides(self, tracker: str) -> None:
        unknown = [n for n in self.given.names(P.PREFIX) if n[len(P.PREFIX):] not in self._tracker_fields]
        if unknown:
            self.log.warning(f"ignoring parameters that '{tracker}' does not have: {', '.join(unknown)}")

    def _sync_tracker_params(self, config: Any) -> None:
        """Make ``tracker_params.*`` show the running config (e.g. options read off a checkpoint)."""
        running = {item.field: item.value for item in P.tracker_params(config)}
        current = self._tracker_values()
        changed = [Parameter(P.PREFIX + f, value=v) for f, v in running.items()
                   if f in self._tracker_fields and not isinstance(v, Parameter.Type)
                   and P.overrides_from({f: current.get(f)}, config)]
        if changed:
            with self._as_internal():
                self.node.set_parameters(changed)

    class _Internal:
        def __init__(self, local: threading.local) -> None:
            self.local = local

        def __enter__(self) -> None:
            self.local.depth = getattr(self.local, "depth", 0) + 1

        def __exit__(self, *exc: Any) -> None:
            self.local.depth -= 1

    def _as_internal(self) -> ParameterHandler._Internal:
        return ParameterHandler._Internal(self._internal)

    # --- reading --------------------------------------------------------------------------------
    def _tracker_values(self) -> dict[str, Any]:
        return {name: self.node.get_parameter_or(P.PREFIX + name, Parameter(P.PREFIX + name)).value
                for name in self._tracker_fields}

    def _policy_from_params(self) -> LostPolicy:
        return LostPolicy(**{field.name: self._param(field.name) for field in dataclasses.fields(LostPolicy)})

    def model_request(self, values: dict[str, Any] | None = None) -> ModelRequest:
        """The model the parameters ask for (``values`` overrides current parameter values).

        When the weights change, only ``tracker_params`` that differ from what the old weights
        implied (the user's own settings) carry over; architecture options follow the new file.
        """
        values = values or {}
        get = lambda name: values.get(name, self._param(name))  # noqa: E731
        tracker, weights = get("tracker"), get("weights")
        overrides: tuple = ()
        try:
            base = P.base_config(tracker, weights)
        except (KeyError, ValueError, TypeError):
            base = None
        if tracker == self._param("tracker") and base is not None:
            hyper = self._tracker_values()
            if weights != self._param("weights"):
                old_base = P.base_config(tracker, self._param("weights"))
                hyper = dict(P.overrides_from(hyper, old_base))
            hyper.update({k[len(P.PREFIX):]: v for k, v in values.items() if k.startswith(P.PREFIX)})
            overrides = P.overrides_from(hyper, base)
        return ModelRequest(tracker, weights, get("device"), bool(get("half")), overrides,
                            cuda_graphs=bool(get("cuda_graphs")), backend=self._backend(values),
                            threads=self._resolved_threads(get("threads")))

    def _backend(self, values: dict[str, Any]) -> str:
        if "backend" in values:
            return values["backend"]
        return self._param("backend") if self.node.has_parameter("backend") else "auto"

    def _resolved_threads(self, value: int) -> int:
        return int(value) if int(value) > 0 else default_threads()

    # --- changes --------------------------------------------------------------------------------
    def _validate_tracker_param(self, name: str, value: Any) -> str | None:
        field = name[len(P.PREFIX):]
        if field not in self._tracker_fields:
            return f"'{self._param('tracker')}' has no hyper-parameter '{field}'"
        from siam_tracking_ros.trackers import make_config

        tracker = self._param("tracker")
        try:
            base = P.base_config(tracker, self._param("weights"))
            make_config(tracker, config_values(base), **{field: P.coerce_like(value, getattr(base, field))})
        except (TypeError, ValueError) as exc:
            return f"{name}: {exc}"
        return None

    def _validate_changes(self, parameters: list[Parameter]) -> tuple[dict[str, Any], str | None]:
        changes: dict[str, Any] = {}
        for parameter in parameters:
            name, value = parameter.name, parameter.value
            if name.startswith(P.PREFIX):
                reason = self._validate_tracker_param(name, value)
            else:
                reason = P.validate_node_param(name, value)
            if reason:
                self.log.warning(f"rejected {name}={value!r}: {reason}")
                return changes, reason
            changes[name] = value
        return changes, None

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        if getattr(self._internal, "depth", 0):
            return SetParametersResult(successful=True)
        with self._set_lock:
            changes, reason = self._validate_changes(parameters)
            reason = reason or self._check_weights(changes)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            self._apply_runtime(changes)
            self._reload_for(changes)
        return SetParametersResult(successful=True)

    def _check_weights(self, changes: dict[str, Any]) -> str | None:
        """Why the (tracker, weights) the change asks for cannot be loaded, checked before accepting it."""
        if "tracker" not in changes and "weights" not in changes:
            return None
        tracker = changes.get("tracker", self._param("tracker"))
        reason = P.check_weights_for(tracker, changes.get("weights", self._param("weights")))
        if reason:
            self.log.warning(f"rejected weights for '{tracker}': {reason}")
        return reason

    def _reload_for(self, changes: dict[str, Any]) -> None:
        """Rebuild the model in the background if ``changes`` need it."""
        if not self.configured or not any(k in RELOAD_KEYS or k.startswith(P.PREFIX) for k in changes):
            return
        request = self.model_request(changes)
        if request == self.engine.loaded and not self.engine.load_error:
            return
        switching = "tracker" in changes and changes["tracker"] != self._param("tracker")
        self.log.info(f"parameter change: loading {request.describe()} in the background")
        self._load(request, switching)

    def _load(self, request: ModelRequest, switching: bool = False) -> None:
        """Build ``request`` in the background; afterwards the parameters name what runs."""
        def done(ok: bool, message: str) -> None:
            if ok and self.engine.tracker is not None:
                self._after_load(request, switching)
            elif not ok and not self.engine.reloading:
                self._revert_to_running(message)

        self.engine.request_model(request, self._newest_frame, done)

    def _after_load(self, request: ModelRequest, switching: bool) -> None:
        config = self.engine.tracker.config
        if switching:
            self._declare_tracker_params(request.tracker, request.weights, config)
        else:
            self._sync_tracker_params(config)

    def _revert_to_running(self, reason: str) -> None:
        """A reload failed: set the model parameters back to the model that still runs."""
        loaded = self.engine.loaded
        if loaded is None:
            return
        running = {"tracker": loaded.tracker, "weights": loaded.weights, "device": loaded.device,
                   "half": loaded.half, "cuda_graphs": loaded.cuda_graphs}
        if self.node.has_parameter("backend"):
            running["backend"] = loaded.backend
        back = [Parameter(k, value=v) for k, v in running.items() if self._param(k) != v]
        if self._resolved_threads(self._param("threads")) != loaded.threads:
            back.append(Parameter("threads", value=loaded.threads))
        with self._as_internal():
            if back:
                self.node.set_parameters(back)
        self._sync_tracker_params(self.engine.tracker.config)
        names = ", ".join(p.name for p in back) or "tracker_params"
        self.log.warning(f"parameters {names} set back to the running model ({reason})")

    def _apply_runtime(self, changes: dict[str, Any]) -> None:
        """Changes that take effect at once: presence policy, thread count, image size limit."""
        policy = self.engine.policy
        for field in dataclasses.fields(LostPolicy):  # every field is a node parameter of its type
            if field.name in changes:
                setattr(policy, field.name, type(field.default)(changes[field.name]))
        self.engine.policy_changed()
        if "threads" in changes:
            self.engine.threads.requested = int(changes["threads"])
        if "max_image_pixels" in changes:
            self.intake.max_pixels = int(changes["max_image_pixels"])

    def _newest_frame(self) -> Any:  # provided by the runtime
        raise NotImplementedError
