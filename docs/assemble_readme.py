"""Assemble README.md: its own top-level sections + the docs/*.md fragments inlined (headings shifted one
level). Edit docs/*.md (or the README sections that have no docs file), then: python docs/assemble_readme.py"""
import re, os
os.chdir(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
s = open('README.md').read()
head, rest = s.split('\n## Contents', 1)
def section(title):
    m = re.search(r'\n## ' + re.escape(title) + r'\n.*?(?=\n## |\n<!-- SECTIONS -->|\Z)', s, re.S)
    return m.group(0).strip('\n') if m else ''
def doc(path, title):
    if not os.path.exists(path):
        return ''
    t = open(path).read().strip('\n')
    lines, fence, first = [], False, True
    for line in t.split('\n'):
        if line.startswith('```'):
            fence = not fence
        elif not fence and re.match(r'#+ ', line):
            line = '#' + line
            if first:
                line, first = f'## {title}', False
        lines.append(line)
    t = '\n'.join(lines)
    t = t.replace('](images/', '](docs/images/').replace('](../', '](')
    return t
parts = [
    section('Use it from Python'),
    section('Command line'),
    section('The embedded default model'),
    section('Training and fine-tuning'),
    doc('docs/evaluation.md', 'Evaluation, model cards and the Hub'),
    doc('docs/space.md', 'Gradio Space') or section('Gradio Space'),
    doc('docs/video.md', 'Video without flicker'),
    doc('docs/performance.md', 'Performance'),
    doc('docs/robustness.md', 'Robustness'),
    doc('docs/convert.md', 'Original ECCV16 weights') or section('Original ECCV16 weights'),
    section('How it works'),
    section('Development'),
]
parts = [p for p in parts if p]
titles = [re.match(r'## (.*)', p).group(1) for p in parts]
anchor = lambda t: re.sub(r'[^a-z0-9 -]', '', t.lower()).replace(' ', '-')
contents = '## Contents\n\n' + ' · '.join(f'[{t}](#{anchor(t)})' for t in titles)
out = head.rstrip('\n') + '\n\n' + contents + '\n\n' + '\n\n'.join(parts) + '\n'
open('README.md', 'w').write(out)
print(titles)
