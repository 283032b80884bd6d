"""The comparer: registry, conversion, tolerances, precision policy, runner, reports, CLI."""
