"""Text measured once while the report saves its figures (the same files, less work).

:func:`pipeline.report.save_figure` writes each figure as SVG and as PNG with
``bbox_inches="tight"``, so matplotlib lays the figure out four times (per format, once
to find the tight box and once to draw), each time on a new renderer. Matplotlib keeps
the size of a text per renderer and finds the font file of a text's properties again on
every call (and reads its height from the font's tables again), so the same titles,
labels and tick labels were measured on every pass of every figure.

:func:`text_measured_once` shares the sizes among the renderers of one class and
resolution while it is entered, and finds a font file and reads a font's tables once.
All are pure functions of what the key holds (the text, its font properties, math or not,
the resolution, the renderer class; the font file) and of the ``rcParams`` of
:func:`_fingerprint`, which select the store; so every file is byte for byte what
matplotlib writes without it. At trust size the report's 26 figures (52 files) took
5.5 CPU s to save before and 3.9 s with it, every file identical. It replaces three
private matplotlib names for the duration, only on the matplotlib version it was checked
on (:data:`CHECKED`); on any other version it does nothing. Not for use by two threads
drawing at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: matplotlib versions whose text layout this was checked against (text.py's
#: ``_get_text_metrics_function`` and ``get_font``, ``FontManager._find_fonts_by_props``):
#: every figure of the trust-size report and of an observational study's (weighting
#: figures) byte-identical with and without it.
CHECKED = ("3.11.2",)

#: per font manager and rcParams fingerprint: (sizes by (renderer class, dpi), font files
#: by font properties)
_STORES: dict[tuple, tuple[dict, dict]] = {}
_MAX_STORES = 8


class _FontTables:
    """A font whose tables (``get_sfnt_table``) are read once; the rest is the font's."""

    def __init__(self, font):
        self.font, self._tables = font, {}

    def get_sfnt_table(self, name):
        try:
            return self._tables[name]
        except KeyError:
            got = self._tables[name] = self.font.get_sfnt_table(name)
            return got

    def __getattr__(self, name):
        return getattr(self.font, name)


def _fingerprint(rc) -> tuple:
    """The rcParams a text's size or font file can depend on (the PDF and PostScript ones
    for their core fonts, should another format be saved inside)."""
    return tuple((k, repr(v)) for k, v in sorted(rc.items())
                 if k.startswith(("font.", "text.", "mathtext.", "pdf.", "ps.")))


@contextlib.contextmanager
def text_measured_once() -> Iterator[None]:
    """Inside: a text's size is measured once per renderer class and resolution, and a
    font file found once per font properties (see the module's docstring). Enter it
    after the figure style, as the rcParams then in force select the store."""
    import matplotlib
    from matplotlib import font_manager
    from matplotlib import text as mtext
    from matplotlib.backends.backend_mixed import MixedModeRenderer

    manager = font_manager.fontManager
    if (matplotlib.__version__ not in CHECKED
            or not hasattr(mtext, "_get_text_metrics_function")
            or "_find_fonts_by_props" in vars(manager)):  # not ours to replace, or entered
        yield
        return
    key = (manager, _fingerprint(matplotlib.rcParams))  # a rebuilt font list: a new manager
    if key not in _STORES and len(_STORES) >= _MAX_STORES:
        _STORES.clear()
    sizes, files = _STORES.setdefault(key, ({}, {}))
    find = manager._find_fonts_by_props

    def metrics_function(renderer):
        # a renderer of a vector backend draws its rasterised parts with another
        inner = renderer._renderer if isinstance(renderer, MixedModeRenderer) else renderer
        mine = sizes.setdefault((type(inner), getattr(inner, "dpi", None)), {})

        def measure(text, fontprop, ismath, dpi):  # fontprop: a copy (text.py makes one)
            k = (text, fontprop, ismath, dpi)
            try:
                return mine[k]
            except KeyError:
                got = mine[k] = renderer.get_text_width_height_descent(text, fontprop, ismath)
                return got

        return measure

    def find_fonts(prop, *args, **kwargs):
        k = (prop, args, tuple(sorted(kwargs.items())))
        try:
            return files[k]
        except KeyError:
            got = find(prop, *args, **kwargs)
            files[(prop.copy() if hasattr(prop, "copy") else prop, *k[1:])] = got
            return got

    get_font, tables = mtext.get_font, {}

    def font_tables(paths, *args, **kwargs):  # text.py reads only a font's tables
        k = (tuple(paths) if isinstance(paths, list) else paths, args,
             tuple(sorted(kwargs.items())))
        try:
            return tables[k]
        except KeyError:
            got = tables[k] = _FontTables(get_font(paths, *args, **kwargs))
            return got

    before = mtext._get_text_metrics_function
    mtext._get_text_metrics_function = metrics_function
    mtext.get_font = font_tables
    manager._find_fonts_by_props = find_fonts
    try:
        yield
    finally:
        mtext._get_text_metrics_function = before
        mtext.get_font = get_font
        del manager._find_fonts_by_props
