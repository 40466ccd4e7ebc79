#!/usr/bin/python3
"""Checks that every relative link in a tree's Markdown files resolves.

Usage: check_links.py [ROOT]   (ROOT: the source tree; default: this file's ../)

For each *.md file under ROOT (build*/ and hidden directories left out), every
inline link [text](target) and image ![alt](target) and every reference
definition [label]: target whose target is relative (no scheme such as
https: or mailto:) must name a file or directory that exists, relative to the
Markdown file. A '#anchor' on a link to a Markdown file (or on its own, for the
same file) must name one of that file's headings, spelled as GitHub spells
heading anchors. Links inside code spans and fenced code blocks are not links.

Prints one line per broken link, "file:line: target: why", and exits 1 if
there is any (2 on bad usage); prints a count and exits 0 otherwise.
Standard library only.
"""

import os
import re
import sys
from urllib.parse import unquote

SKIP_DIRS = re.compile(r"^(build.*|\..*|node_modules|third_party|vendor)$")
FENCE = re.compile(r"^ {0,3}(```+|~~~+)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$")
# [text](target "title") and ![alt](target); text may hold `code` and [x].
INLINE = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
CODE_SPAN = re.compile(r"(`+)(?:.+?)\1")


def markdown_files(root):
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not SKIP_DIRS.match(d))
        for name in sorted(files):
            if name.endswith(".md"):
                yield os.path.join(top, name)


def prose_lines(path):
    """(line number, text) of the lines outside fenced code blocks."""
    fence = None
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            m = FENCE.match(line)
            if m:
                marker = m.group(1)
                if fence is None:
                    fence = marker[0] * len(marker)
                elif marker.startswith(fence):
                    fence = None
                continue
            if fence is None:
                yield number, line


def slug(heading):
    """The anchor GitHub gives a heading: its text, lowercased, without
    punctuation other than '-' and '_', spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = text.replace("`", "").replace("*", "")
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML tags
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


_anchors = {}


def anchors(path):
    """Every anchor of a Markdown file's headings (repeats get -1, -2, ...)."""
    if path not in _anchors:
        seen = {}
        found = set()
        for _, line in prose_lines(path):
            m = HEADING.match(line)
            if not m:
                continue
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else "%s-%d" % (base, n))
        _anchors[path] = found
    return _anchors[path]


def links(path):
    for number, line in prose_lines(path):
        text = CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)
        m = REFERENCE.match(text)
        if m:
            yield number, m.group(1)
            continue
        for m in INLINE.finditer(text):
            yield number, m.group(1)


def problem(md, target):
    """Why `target`, linked from the Markdown file `md`, does not resolve
    (None if it does or is not a relative link)."""
    if not target or SCHEME.match(target) or target.startswith("//"):
        return None
    where, _, anchor = target.partition("#")
    where = unquote(where)
    if where.startswith("/"):
        return "absolute path: link relative to the file instead"
    dest = os.path.normpath(os.path.join(os.path.dirname(md), where)) if where else md
    if not os.path.exists(dest):
        return "no such file or directory"
    if anchor and dest.endswith(".md") and os.path.isfile(dest):
        if unquote(anchor).lower() not in anchors(dest):
            return "no heading with anchor #%s in %s" % (anchor, os.path.basename(dest))
    return None


def main(argv):
    if len(argv) > 2:
        print("usage: check_links.py [ROOT]", file=sys.stderr)
        return 2
    root = argv[1] if len(argv) == 2 else os.path.join(os.path.dirname(__file__), "..")
    root = os.path.abspath(root)
    if not os.path.isdir(root):
        print("check_links.py: %s is not a directory" % root, file=sys.stderr)
        return 2
    checked = broken = files = 0
    for md in markdown_files(root):
        files += 1
        for number, target in links(md):
            checked += 1
            why = problem(md, target)
            if why:
                broken += 1
                print("%s:%d: %s: %s" % (os.path.relpath(md, root), number, target, why))
    if broken:
        print("check_links.py: %d of %d links in %d Markdown files are broken" %
              (broken, checked, files))
        return 1
    print("check_links.py: all %d relative links in %d Markdown files resolve" % (checked, files))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
