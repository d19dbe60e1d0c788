"""Semantic rewrites: code changed in shape but not in behaviour, the contamination only a behavioural
measure (:mod:`decontam.behaviour`) still sees.

:func:`semantic_rewrite` applies up to ``n_edits`` of :data:`SEMANTIC_EDITS`, each chosen by a seeded RNG
among the spots where it keeps what the code computes:

* ``for_to_while``: a ``for`` loop over ``range`` becomes a counting ``while`` loop (no ``continue``
  in it, counter not read after it), any other ``for`` an explicit ``iter``/``next`` loop;
* ``swap_if``: ``if c: A else: B`` -> ``if not c: B else: A`` (and the same for ``A if c else B``);
* ``comp_to_loop``: ``xs = [e for t in it if c]`` (list, set, dict) unrolled into nested loops;
* ``loop_to_comp``: ``xs = []`` + ``for t in it: [if c:] xs.append(e)`` folded into a comprehension;
* ``extract_helper``: a sub-expression of a function moved into a new module-level function that takes
  the local names it reads;
* ``inline_helper``: a one-``return`` module-level helper substituted into its call sites (and dropped);
* ``keyword_args``: positional arguments of calls to the module's own functions passed by keyword, in
  reverse order;
* ``add_line``: a dead assignment to a fresh name added to a function body.

Example:
    >>> src = "def f(xs):\\n    out = []\\n    for x in xs:\\n        out.append(x * 2)\\n    return out\\n"
    >>> out, done = semantic_rewrite(src, seed=0, kinds=("loop_to_comp",))
    >>> done, "out = [x * 2 for x in xs]" in out
    (['loop_to_comp'], True)
"""

from __future__ import annotations

import ast
import copy
import random

from decontam.canonical import is_docstring
from decontam.mutate import _bodies, _names, apply_edits

SEMANTIC_EDITS = ("for_to_while", "swap_if", "comp_to_loop", "loop_to_comp", "extract_helper",
                  "inline_helper", "keyword_args", "add_line")  # fmt: skip
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _fresh(tree: ast.AST, base: str) -> str:
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    used |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    used |= {n.name for n in ast.walk(tree) if isinstance(n, (*_FUNCS, ast.ClassDef))}
    k = 0
    while f"{base}_{k}" in used:
        k += 1
    return f"{base}_{k}"


def _walk_scope(node: ast.AST):
    """Nodes under ``node`` without descending into nested functions, lambdas or classes."""
    stack = list(ast.iter_child_nodes(node))
    while stack:
        sub = stack.pop()
        yield sub
        if not isinstance(sub, _SCOPES):
            stack.extend(ast.iter_child_nodes(sub))


def _stmt(code: str) -> list[ast.stmt]:
    return ast.parse(code).body


def _read_after(body: list[ast.stmt], i: int) -> set[str]:
    return set().union(*(_names(s)[1] for s in body[i + 1 :])) if i + 1 < len(body) else set()


# -- loops -------------------------------------------------------------------------------------------
def _for_to_while(tree: ast.Module, rng: random.Random) -> bool:
    spots = [(b, i) for b in _bodies(tree) for i, s in enumerate(b) if isinstance(s, ast.For) and not s.orelse]
    if not spots:
        return False
    body, i = rng.choice(spots)
    loop = body[i]
    it = loop.iter
    is_range = (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and 1 <= len(it.args) <= 2 and not it.keywords and isinstance(loop.target, ast.Name)
                and not any(isinstance(n, ast.Starred) for n in it.args))  # fmt: skip
    var = loop.target.id if isinstance(loop.target, ast.Name) else None
    inner = ast.Module(body=loop.body, type_ignores=[])
    if (is_range and not any(isinstance(n, ast.Continue) for n in ast.walk(inner))
            and var not in _names(inner)[0] and var not in _read_after(body, i)):  # fmt: skip
        start = ast.unparse(it.args[0]) if len(it.args) == 2 else "0"
        stop = _fresh(tree, "stop")
        new = _stmt(f"{var} = {start}\n{stop} = {ast.unparse(it.args[-1])}\nwhile {var} < {stop}:\n    pass\n")
        new[2].body = loop.body + _stmt(f"{var} += 1")
    else:
        cursor = _fresh(tree, "cursor")
        target = ast.unparse(loop.target)
        new = _stmt(f"{cursor} = iter({ast.unparse(it)})\nwhile True:\n    try:\n        {target} = next({cursor})\n"
                    "    except StopIteration:\n        break\n")  # fmt: skip
        new[1].body += loop.body
    body[i : i + 1] = new
    return True


def _comp_to_loop(tree: ast.Module, rng: random.Random) -> bool:
    comps = (ast.ListComp, ast.SetComp, ast.DictComp)
    spots = []
    for body in _bodies(tree):
        for i, s in enumerate(body):
            value = getattr(s, "value", None)
            if not isinstance(value, comps) or any(g.is_async for g in value.generators):
                continue
            if isinstance(s, ast.Assign) and (len(s.targets) != 1 or not isinstance(s.targets[0], ast.Name)):
                continue
            if not isinstance(s, (ast.Assign, ast.Return)):
                continue
            targets = {n.id for g in value.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)}
            inside_nodes = {id(n) for n in ast.walk(value)}
            inside = {n.id for n in ast.walk(value) if isinstance(n, ast.Name)}
            # the loop variables would leak into the function: they must be used nowhere else
            elsewhere = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in inside_nodes}
            if targets & elsewhere or (isinstance(s, ast.Assign) and s.targets[0].id in inside):
                continue
            spots.append((body, i))
    if not spots:
        return False
    body, i = rng.choice(spots)
    stmt = body[i]
    comp = stmt.value
    name = stmt.targets[0].id if isinstance(stmt, ast.Assign) else _fresh(tree, "result")
    init = {ast.ListComp: "[]", ast.SetComp: "set()", ast.DictComp: "{}"}[type(comp)]
    if isinstance(comp, ast.DictComp):
        leaf = _stmt(f"{name}[{ast.unparse(comp.key)}] = {ast.unparse(comp.value)}")
    else:
        method = "append" if isinstance(comp, ast.ListComp) else "add"
        leaf = _stmt(f"{name}.{method}({ast.unparse(comp.elt)})")
    for gen in reversed(comp.generators):
        for cond in reversed(gen.ifs):
            leaf = [ast.If(test=cond, body=leaf, orelse=[])]
        leaf = [ast.For(target=gen.target, iter=gen.iter, body=leaf, orelse=[], type_comment=None)]
    new = _stmt(f"{name} = {init}") + leaf + (_stmt(f"return {name}") if isinstance(stmt, ast.Return) else [])
    body[i : i + 1] = new
    return True


def _append_loop(loop: ast.stmt, name: str):
    """(condition or None, element) of ``for t in it: [if c:] name.append(e)``, else None."""
    if not isinstance(loop, ast.For) or loop.orelse or len(loop.body) != 1:
        return None
    inner, cond = loop.body[0], None
    if isinstance(inner, ast.If) and not inner.orelse and len(inner.body) == 1:
        cond, inner = inner.test, inner.body[0]
    call = getattr(inner, "value", None)
    if (isinstance(inner, ast.Expr) and isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "append" and isinstance(call.func.value, ast.Name) and call.func.value.id == name
            and len(call.args) == 1 and not call.keywords and not isinstance(call.args[0], ast.Starred)):  # fmt: skip
        return cond, call.args[0]
    return None


def _loop_to_comp(tree: ast.Module, rng: random.Random) -> bool:
    spots = []
    for body in _bodies(tree):
        for i in range(len(body) - 1):
            s = body[i]
            if not (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name)
                    and isinstance(s.value, ast.List) and not s.value.elts):  # fmt: skip
                continue
            name = s.targets[0].id
            found = _append_loop(body[i + 1], name)
            if found is None:
                continue
            loop = body[i + 1]
            parts = [loop.iter, found[1]] + ([found[0]] if found[0] is not None else [])
            reads = set().union(*(_names(p)[1] for p in parts))
            leaked = _names(loop.target)[0] & _read_after(body, i + 1)
            if name not in reads and not leaked and not any(isinstance(n, ast.NamedExpr) for p in parts for n in ast.walk(p)):
                spots.append((body, i, found))
    if not spots:
        return False
    body, i, (cond, elt) = rng.choice(spots)
    loop = body[i + 1]
    gen = ast.comprehension(target=loop.target, iter=loop.iter, ifs=[cond] if cond is not None else [], is_async=0)
    body[i].value = ast.ListComp(elt=elt, generators=[gen])
    del body[i + 1]
    return True


# -- branches ----------------------------------------------------------------------------------------
def _negate(test: ast.expr) -> ast.expr:
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return test.operand
    return ast.UnaryOp(op=ast.Not(), operand=test)


def _swap_if(tree: ast.Module, rng: random.Random) -> bool:
    spots = [n for n in ast.walk(tree) if isinstance(n, (ast.If, ast.IfExp)) and n.orelse]
    if not spots:
        return False
    node = rng.choice(spots)
    node.test = _negate(node.test)
    node.body, node.orelse = node.orelse, node.body
    return True


# -- helpers -----------------------------------------------------------------------------------------
_NO_EXTRACT = (ast.NamedExpr, ast.Lambda, ast.Yield, ast.YieldFrom, ast.Await, ast.Starred)


def _bound_in(fn: ast.AST) -> set[str]:
    names = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    for n in _walk_scope(fn):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            names.add(n.id)
        elif isinstance(n, (*_FUNCS, ast.ClassDef)):
            names.add(n.name)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            return set()  # names declared global: an extracted copy would not see the rebinding
    return names


def _extract_helper(tree: ast.Module, rng: random.Random) -> bool:
    spots = []
    for fn in [n for n in tree.body if isinstance(n, _FUNCS)]:
        bound = _bound_in(fn)
        if not bound and fn.args.args:
            continue
        for node in _walk_scope(fn):
            if not isinstance(node, (ast.BinOp, ast.BoolOp, ast.Compare, ast.Call, ast.Subscript, ast.ListComp)):
                continue
            inner = list(ast.walk(node))
            if len(inner) < 5 or any(isinstance(n, _NO_EXTRACT) for n in inner):
                continue
            if any(isinstance(n, ast.Name) and n.id == "super" for n in inner) or not isinstance(
                getattr(node, "ctx", ast.Load()), ast.Load
            ):
                continue
            spots.append((fn, node))
    if not spots:
        return False
    fn, node = rng.choice(spots)
    bound = _bound_in(fn)
    own = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    free = sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
                  & bound - own)  # fmt: skip
    helper = _fresh(tree, "helper")
    new_def = _stmt(f"def {helper}({', '.join(free)}):\n    return {ast.unparse(node)}\n")[0]
    call = ast.parse(f"{helper}({', '.join(free)})", mode="eval").body
    _replace_node(fn, node, call)
    tree.body.insert(tree.body.index(fn), new_def)
    return True


def _replace_node(root: ast.AST, old: ast.AST, new: ast.AST) -> None:
    for parent in ast.walk(root):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list) and any(v is old for v in value):
                value[[i for i, v in enumerate(value) if v is old][0]] = new
                return


def _one_return(fn: ast.AST) -> ast.expr | None:
    body = [s for s in fn.body if not is_docstring(s)]
    a = fn.args
    if (len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None and not fn.decorator_list
            and not (a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults)):  # fmt: skip
        return body[0].value
    return None


class _Inline(ast.NodeTransformer):
    def __init__(self, name: str, params: list[str], expr: ast.expr, shadowed):
        self.name, self.params, self.expr, self.shadowed, self.done = name, params, expr, shadowed, 0

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        if not (isinstance(f, ast.Name) and f.id == self.name and len(node.args) == len(self.params)):
            return node
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            return node
        uses = {p: 0 for p in self.params}
        for n in ast.walk(self.expr):
            if isinstance(n, ast.Name) and n.id in uses:
                uses[n.id] += 1
        args = dict(zip(self.params, node.args, strict=True))
        if any(not isinstance(args[p], (ast.Name, ast.Constant)) and uses[p] != 1 for p in self.params):
            return node  # an argument evaluated twice or never: not the same program
        body = copy.deepcopy(self.expr)
        for n in list(ast.walk(body)):
            for field, value in ast.iter_fields(n):
                if isinstance(value, ast.Name) and value.id in args:
                    setattr(n, field, copy.deepcopy(args[value.id]))
                elif isinstance(value, list):
                    value[:] = [copy.deepcopy(args[v.id]) if isinstance(v, ast.Name) and v.id in args else v
                                for v in value]  # fmt: skip
        if isinstance(body, ast.Name) and body.id in args:
            body = copy.deepcopy(args[body.id])
        self.done += 1
        return body


def _inline_helper(tree: ast.Module, rng: random.Random) -> bool:
    helpers = []
    for fn in tree.body:
        expr = _one_return(fn) if isinstance(fn, ast.FunctionDef) else None
        if expr is None or fn.name in _names(expr)[1]:
            continue
        params = [a.arg for a in fn.args.args]
        globals_read = _names(expr)[1] - set(params)
        callers = [g for g in tree.body if isinstance(g, _FUNCS) and g is not fn
                   and any(isinstance(c, ast.Call) and getattr(c.func, "id", None) == fn.name for c in ast.walk(g))
                   and not (_bound_in(g) & globals_read)]  # fmt: skip
        if callers:
            helpers.append((fn, params, expr, callers))
    if not helpers:
        return False
    fn, params, expr, callers = rng.choice(helpers)
    done = 0
    for g in callers:
        t = _Inline(fn.name, params, expr, None)
        t.visit(g)
        done += t.done
    if not done:
        return False
    if fn.name not in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}:
        tree.body.remove(fn)
    return True


def _keyword_args(tree: ast.Module, rng: random.Random) -> bool:
    own = {fn.name: [a.arg for a in fn.args.args] for fn in tree.body if isinstance(fn, ast.FunctionDef)
           and not (fn.args.posonlyargs or fn.args.vararg)}  # fmt: skip
    spots = []
    for c in ast.walk(tree):
        if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in own and len(c.args) >= 2:
            params = own[c.func.id]
            pure = not any(isinstance(n, (ast.Call, ast.NamedExpr, ast.Await, ast.Yield)) for a in c.args
                           for n in ast.walk(a))  # fmt: skip
            if len(c.args) <= len(params) and pure and not any(isinstance(a, ast.Starred) for a in c.args):
                spots.append(c)
    if not spots:
        return False
    call = rng.choice(spots)
    params = own[call.func.id]
    pairs = [ast.keyword(arg=params[k], value=a) for k, a in enumerate(call.args)]
    call.keywords = list(reversed(pairs)) + call.keywords
    call.args = []
    return True


def _add_line(tree: ast.Module, rng: random.Random) -> bool:
    fns = [n for n in ast.walk(tree) if isinstance(n, _FUNCS)]
    if not fns:
        return False
    fn = rng.choice(fns)
    name = _fresh(tree, rng.choice(("count", "seen", "flag", "unused")))
    start = 1 if fn.body and is_docstring(fn.body[0]) else 0
    value = rng.choice(("0", "None", "[]", "False", "''"))
    fn.body.insert(rng.randint(start, max(start, len(fn.body) - 1)), _stmt(f"{name} = {value}")[0])
    return True


_EDITS = {"for_to_while": _for_to_while, "swap_if": _swap_if, "comp_to_loop": _comp_to_loop,
          "loop_to_comp": _loop_to_comp, "extract_helper": _extract_helper, "inline_helper": _inline_helper,
          "keyword_args": _keyword_args, "add_line": _add_line}  # fmt: skip


def semantic_rewrite(
    source: str, seed: int = 0, n_edits: int = 3, kinds: tuple[str, ...] = SEMANTIC_EDITS
) -> tuple[str, list[str]]:
    """Apply up to ``n_edits`` distinct edits of ``kinds`` (:data:`SEMANTIC_EDITS`) that fit ``source``,
    in a seeded random order. Returns the rewritten source (``ast.unparse`` formatting) and the edits
    applied. Raises ``SyntaxError`` for source that does not parse.

    Example:
        >>> out, done = semantic_rewrite("def f(n):\\n    t = 0\\n    for i in range(n):\\n        t += i\\n    return t\\n",
        ...                              kinds=("for_to_while",))
        >>> done, "while i < stop_0:" in out
        (['for_to_while'], True)
    """
    return apply_edits(source, _EDITS, kinds, n_edits, seed)
