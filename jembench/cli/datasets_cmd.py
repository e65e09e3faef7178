"""``jembench datasets``: the datasets jembench knows, where it looks for them, whether they are there; downloads."""

from __future__ import annotations

import click

from .options import emit, json_option, shared_options


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _summary(doc: dict) -> str:
    rows = [["name", "shape", "classes", "train", "test", "state", "description"]]
    for d in doc["datasets"]:
        states = set(d["state"].values())
        state = "bundled" if d["location"] == "bundled" else states.pop() if len(states) == 1 else \
            ", ".join(f"{s} {st}" for s, st in d["state"].items())
        size = {s: d["sizes"].get(s, f"({d['expected_sizes'][s]})" if s in d["expected_sizes"] else "-")
                for s in ("train", "test")}
        rows.append([d["name"], "x".join(map(str, d["shape"])), str(d["n_classes"] or "-"),
                     str(size["train"]), str(size["test"]), state, d["description"]])
    lines = [_table(rows), "(sizes in parentheses: registered, not on disk)", f"data root: {doc['data_dir']}"]
    for d in doc["datasets"]:
        for split, problem in d["problems"].items():
            lines.append(f"  {d['name']} {split}: corrupt: {problem}")
        if "absent" in d["state"].values():
            lines.append(f"  {d['name']}: absent; fetch with: jembench datasets --download {d['name']} "
                         f"--data-dir {doc['data_dir']}")
    lines += ["", "OOD-only sets derived from the in-distribution set (seeded): " + ", ".join(doc["synthetic_ood"]),
              "Your own data: npz:PATH (array x uint8 NCHW/NHWC, optional y), folder:PATH[@H[xW]] (ImageFolder)"]
    return "\n".join(lines)


@click.command("datasets")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@shared_options("data_dir")
@click.option("--download", is_flag=True,
              help="Fetch the NAMEd datasets (every split, via torchvision) into the data root, then list them.")
@json_option
def datasets_cmd(names: tuple[str, ...], data_dir: str | None, download: bool, as_json: bool) -> None:
    """List datasets: shape, classes, split sizes on disk, and each split's state: intact, corrupt or absent.

    \b
    Examples:
      jembench datasets                                   every dataset and where it is looked for
      jembench datasets cifar10 svhn --json               just these, as JSON
      jembench datasets --download cifar10 svhn --data-dir /data   fetch them (torchvision)

    \b
    Files are laid out as torchvision lays them out under the root (--data-dir, else $JEMBENCH_DATA, else
    ~/.cache/jembench/data): cifar-10-batches-py/, cifar-100-python/, {train,test}_32x32.mat (SVHN), celeba/.
    Nothing is ever downloaded without --download; offline clusters can copy those files in by hand.
    digits (8x8 scikit-learn digits) is bundled and needs nothing.

    \b
    Beyond the named datasets, every command that takes a dataset accepts:
      npz:PATH               array x (uint8, [N,C,H,W] or [N,H,W,C]), optional y (labels)
      folder:PATH[@H[xW]]    an ImageFolder (PATH/<class>/<image>); @32 resizes mixed sizes to 32x32
      noise, uniform, constant, interp, rotated   synthetic OOD sets derived from the in-distribution test set
    OOD sets whose shape differs from the model's are resized (shorter side + center crop, bilinear antialias)
    and converted RGB <-> gray (BT.601 luma / replication); the rule is recorded in results.json.
    """
    from ..data.catalog import catalog_document, download_datasets, list_datasets

    statuses = download_datasets(names, data_dir) if download else list_datasets(names, data_dir)
    doc = catalog_document(statuses, data_dir)
    emit(doc, as_json, _summary(doc))
