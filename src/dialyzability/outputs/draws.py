"""``draws.csv``: every posterior draw of a fit as one row, for R, spreadsheets and pandas.

The layout of R's ``posterior`` package (``as_draws_df``): columns ``.chain``, ``.iteration``
(within the chain) and ``.draw`` (over all chains), all counted from 1, then one column per
scalar of every posterior variable (parameters, predictions and the registry's quantities, such
as ``ratio``), a variable with dimensions flattened as ``name[label]`` (``ratio[HD]``,
``timing[t_session1_start]``; ``name[label1,label2]`` over two dimensions). A single-case fit
is written as that case reads (:meth:`~dialyzability.results.fit.Fit.posterior`, with the
times below the threshold); a pooled fit with every case, labelled by case id. Values are
written exactly (shortest round-trip text).
"""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np

from dialyzability.io.files import write_whole


def draws_table(fit) -> tuple[list[str], np.ndarray]:
    """(column names, array of shape (chains x draws, columns)) of :func:`write_draws`'s
    file, the index columns included."""
    post = fit.posterior if fit.single else fit.idata.posterior
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    chain, iteration = np.meshgrid(np.arange(chains), np.arange(draws), indexing="ij")
    names = [".chain", ".iteration", ".draw"]
    columns = [chain.ravel() + 1, iteration.ravel() + 1, np.arange(chains * draws) + 1]
    for name, var in post.data_vars.items():
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        var = var.transpose("chain", "draw", *extra)
        values = np.asarray(var.values, dtype=float).reshape(chains * draws, -1)
        if extra:
            labels = itertools.product(*(var[d].values.tolist() for d in extra))
            names += [f"{name}[{','.join(map(str, label))}]" for label in labels]
        else:
            names.append(name)
        columns.append(values)
    return names, np.column_stack(columns)


def write_draws(fit, path: str | Path) -> Path:
    """Write ``draws.csv`` of ``fit`` to ``path``, whole or not at all; returns the path."""
    names, table = draws_table(fit)
    index = table[:, :3].astype(int).tolist()
    values = table[:, 3:].tolist()

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh)
            out.writerow(names)
            out.writerows(i + v for i, v in zip(index, values, strict=True))

    return write_whole(path, write)
