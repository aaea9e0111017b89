"""The validate-config step, written out for the RunConfig's keys at compile time."""

from typing import NamedTuple

__all__ = ["make_validate_config_component"]


def make_validate_config_component(parameters: list, compiled: dict):
    """The `validate-config` step's function, written for this RunConfig's keys.

    KFP reads a component's inputs from its function's signature and ships the function's
    source, so a step that takes every run-time key as a typed input is written out here
    from `parameters` ((name, python type) of each pipeline parameter; the pipeline passes
    every one, so none has a default here and a changed default changes no step); `compiled`
    (the compile-time keys' values) is baked into its body. The function checks every value
    with RunConfig's rules (kfp_yolo.components.config.checks) and returns the checked values, which
    the later steps take instead of the raw parameters.
    """
    import linecache

    args = ",\n".join(f"    {name}: {kind.__name__}" for name, kind in parameters)
    # config: every checked value (compile-time keys too) as one structured value, which the
    # search, train and publish steps take whole (checks.CONFIG)
    outputs = ", ".join([*(f"({name!r}, {kind.__name__})" for name, kind in parameters),
                         "('config', dict)"])
    source = (
        f"def validate_config_component(\n{args},\n"
        f") -> NamedTuple('CheckedConfig', [{outputs}]):\n"
        '    """KFP step: every parameter checked with the config\'s rules, before any data or '
        'GPU."""\n'
        "    values = dict(locals())\n"
        "    from kfp_yolo.components.boundary import install\n\n"
        "    install()\n"
        "    from kfp_yolo.components.config.checks import check_run_parameters\n\n"
        f"    return check_run_parameters(values, compiled={compiled!r})\n")
    filename = f"<kfp-yolo validate-config {abs(hash(source)):x}>"
    # inspect.getsource (which KFP calls) finds the source of exec'd code through linecache
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"NamedTuple": NamedTuple}
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - source built above
    return namespace["validate_config_component"]
