//! The argument tree libseccomp builds for one system call when its
//! conditional rules do not all share one action.
//!
//! Where such rules overlap, which one decides is not the profile's order:
//! libseccomp 2.5 turns each rule into a chain of 32-bit tests, merges the
//! chains into one tree whose levels are kept sorted (by argument, high half
//! before low, then by operator, then by value), and evaluates a level from
//! its first node on. So for `a0 >= 10 → A` and `a0 <= 20 → B`, 15 gets `B`,
//! whatever the order of the two rules, and of `a0 >= 10 → A` and
//! `a0 >= 20 → B`, 25 gets `B`. Some merges it refuses (`EEXIST`), and runc
//! with them: two rules whose chains end in the same test with different
//! actions. This module builds the same tree, with the same refusals, and
//! emits BPF that walks it; `libseccomp_tests` checks the outcome against
//! libseccomp itself.
//!
//! The model, in the terms used below:
//! - A **node** tests one 32-bit half of an argument: `(half & mask) op datum`
//!   with `op` one of `==`, `>`, `>=`. Each of its two outcomes either goes
//!   on to another level, returns an action, or, with neither, *falls
//!   through*: to the node after it on its level, or, after the last one,
//!   to wherever the level itself falls through (the node after the parent
//!   that led to it; the call's default at the top).
//! - A 64-bit comparison is two or three nodes (`hi > d`, `hi == d`, then
//!   the low half), a 32-bit one is one node, with `!=`, `<` and `<=`
//!   written as `==`, `>=` and `>` whose false outcome holds.
//! - Merging a rule's chain into the tree walks each level: an equal node
//!   (same half, op, mask and datum) is merged into, else the chain's node is
//!   inserted before the first node it sorts above, or at the end.

use std::collections::HashMap;

use super::bpf::{Asm, Cond, Label, To, arg_hi, arg_lo};
use super::profile::{Arg, Cmp};

type Id = usize;

/// What a node compares the accumulator with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    Eq,
    MaskedEq,
    Gt,
    Ge,
}

/// One outcome of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// The level it goes on to, by any node of that level.
    next: Option<Id>,
    /// Whether it returns `action` (when `next` is empty).
    acts: bool,
    /// Kept apart from `acts`: libseccomp may set the value alone.
    action: u32,
}

impl Outcome {
    fn act(action: u32) -> Outcome {
        Outcome {
            next: None,
            acts: true,
            action,
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    arg: u8,
    high: bool,
    test: Test,
    /// The rule's operator, which orders nodes on a level.
    cmp: Cmp,
    mask: u32,
    datum: u32,
    /// The rule's whole 64-bit value.
    full: u64,
    t: Outcome,
    f: Outcome,
    prev: Option<Id>,
    after: Option<Id>,
    /// Taken out of the tree by pruning.
    removed: bool,
}

impl Node {
    fn outcome(&self, holds: bool) -> &Outcome {
        if holds { &self.t } else { &self.f }
    }

    fn outcome_mut(&mut self, holds: bool) -> &mut Outcome {
        if holds { &mut self.t } else { &mut self.f }
    }

    fn is_leaf(&self) -> bool {
        self.t.next.is_none() && self.f.next.is_none()
    }

    /// Where the node stands among nodes for other halves and arguments.
    fn half_rank(&self) -> u32 {
        u32::from(self.arg) * 2 + u32::from(self.high)
    }

    fn op_rank(&self) -> u32 {
        match self.cmp {
            Cmp::Eq | Cmp::Ne | Cmp::MaskedEq(_) => 3,
            Cmp::Le | Cmp::Lt => 2,
            Cmp::Ge | Cmp::Gt => 1,
        }
    }

    /// The same test: merged into one node.
    fn same(&self, o: &Node) -> bool {
        self.half_rank() == o.half_rank()
            && self.test == o.test
            && self.datum == o.datum
            && self.mask == o.mask
    }

    /// Sorts below `o`: a level keeps nodes that sort above first.
    fn below(&self, o: &Node) -> bool {
        let key = |n: &Node| (n.half_rank(), n.op_rank());
        if key(self) != key(o) {
            return key(self) < key(o);
        }
        match self.cmp {
            // Smaller bounds first for `<` and `<=`, larger for the rest.
            Cmp::Le | Cmp::Lt => self.datum > o.datum,
            _ => self.datum < o.datum,
        }
    }
}

/// Why libseccomp would not take a rule; each holds the rule's position in
/// the list given to [`Tree::build`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// The same test ends it and an earlier rule with different actions
    /// (libseccomp's `EEXIST`).
    Conflict(usize),
    /// Merging it never ends in libseccomp 2.5.4 (its level links loop), so
    /// runc would hang in `create`.
    Endless(usize),
}

/// Steps a merge may take; real profiles take a few hundred.
const BUDGET: usize = 1_000_000;

/// Where a pointer to a level is kept: merging may move it to a node
/// inserted before the one it pointed to.
#[derive(Clone, Copy)]
enum Slot {
    Root,
    Branch(Id, bool),
}

/// The tree for one system call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Tree {
    nodes: Vec<NodeEq>,
    root: Id,
}

/// `Node` compared by content, so that sections compare equal.
#[derive(Clone, Debug)]
struct NodeEq(Node);

impl PartialEq for NodeEq {
    fn eq(&self, o: &Self) -> bool {
        let (a, b) = (&self.0, &o.0);
        a.arg == b.arg
            && a.high == b.high
            && a.test == b.test
            && a.cmp == b.cmp
            && a.mask == b.mask
            && a.datum == b.datum
            && a.full == b.full
            && a.t == b.t
            && a.f == b.f
            && a.prev == b.prev
            && a.after == b.after
    }
}

impl Eq for NodeEq {}

/// Where an outcome leads, when emitting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Goto {
    Ret(u32),
    Block(usize),
}

/// One node as reached with a given fall-through.
struct Block {
    node: Id,
    t: Goto,
    f: Goto,
}

impl Tree {
    /// Merges `rules` (action, conditions), in order, as libseccomp adds
    /// them for one call. Each rule has conditions; `wide` is a 64-bit ABI.
    pub(super) fn build(rules: &[(u32, Vec<Arg>)], wide: bool) -> Result<Tree, Refusal> {
        let mut b = Builder { nodes: Vec::new() };
        let mut root = None;
        for (i, (action, args)) in rules.iter().enumerate() {
            let mut args = args.clone();
            args.sort_by_key(|a| a.index);
            let Some(chain) = b.chain(*action, &args, wide) else {
                continue;
            };
            if root.is_none() {
                root = Some(chain);
                continue;
            }
            let mut slots = Slots {
                root: &mut root,
                nodes: &mut b.nodes,
                steps: 0,
            };
            // First the pruning pass, which may take out parts of the tree
            // that the new chain makes redundant, or find the new chain
            // redundant itself; then the merge.
            let mut st = Walk {
                flags: 0,
                action: *action,
            };
            let top = *slots.root;
            let removed = slots.prune(top, Some(chain), &mut st);
            if slots.steps > BUDGET {
                return Err(Refusal::Endless(i));
            }
            if removed > 0 {
                if slots.root.is_none() {
                    *slots.root = Some(chain);
                    continue;
                }
            } else if st.flags & REDUNDANT == REDUNDANT {
                continue;
            }
            let merged = slots.merge(Slot::Root, chain);
            if slots.steps > BUDGET || !slots.acyclic() {
                return Err(Refusal::Endless(i));
            }
            merged.map_err(|()| Refusal::Conflict(i))?;
        }
        let root = root.expect("Tree::build takes conditional rules only");
        Ok(Tree {
            nodes: b.nodes.into_iter().map(NodeEq).collect(),
            root,
        })
    }

    fn node(&self, id: Id) -> &Node {
        &self.nodes[id].0
    }

    /// The first node of `id`'s level.
    fn first(&self, mut id: Id) -> Id {
        while let Some(p) = self.node(id).prev {
            id = p;
        }
        id
    }

    /// What the tree returns for `args`, `default` when nothing decides.
    #[cfg(test)]
    pub(super) fn decide(&self, args: &[u64; 6], default: u32) -> u32 {
        self.walk(self.first(self.root), args, &|| default)
    }

    #[cfg(test)]
    fn walk(&self, id: Id, args: &[u64; 6], fall: &dyn Fn() -> u32) -> u32 {
        let n = self.node(id);
        let half = if n.high {
            (args[usize::from(n.arg)] >> 32) as u32
        } else {
            args[usize::from(n.arg)] as u32
        };
        let a = half & n.mask;
        let holds = match n.test {
            Test::Eq | Test::MaskedEq => a == n.datum,
            Test::Gt => a > n.datum,
            Test::Ge => a >= n.datum,
        };
        let after = || match n.after {
            Some(s) => self.walk(s, args, fall),
            None => fall(),
        };
        let o = n.outcome(holds);
        match o.next {
            Some(level) => self.walk(self.first(level), args, &after),
            None if o.acts => o.action,
            None => after(),
        }
    }

    /// Emits the walk of the tree, `default` when nothing decides.
    pub(super) fn emit(&self, asm: &mut Asm, default: u32) {
        let mut blocks = Vec::new();
        let mut seen = HashMap::new();
        let mut order = Vec::new();
        let top = self.block(
            self.first(self.root),
            Goto::Ret(default),
            &mut blocks,
            &mut seen,
            &mut order,
        );
        // Reverse post-order: every block before the blocks it jumps to.
        order.reverse();
        debug_assert_eq!(order.first(), Some(&top));
        let labels: Vec<Label> = blocks.iter().map(|_| asm.label()).collect();
        let mut rets: Vec<(u32, Label)> = Vec::new();
        let mut to = |asm: &mut Asm, g: Goto| match g {
            Goto::Block(b) => To::Label(labels[b]),
            Goto::Ret(r) => match rets.iter().find(|(v, _)| *v == r) {
                Some(&(_, l)) => To::Label(l),
                None => {
                    let l = asm.label();
                    rets.push((r, l));
                    To::Label(l)
                }
            },
        };
        for &b in &order {
            let block = blocks[b].as_ref().expect("every block is filled in");
            let n = self.node(block.node);
            asm.bind(labels[b]);
            asm.load(if n.high { arg_hi(n.arg) } else { arg_lo(n.arg) });
            if n.mask != u32::MAX {
                asm.and(n.mask);
            }
            let cond = match n.test {
                Test::Eq | Test::MaskedEq => Cond::Eq,
                Test::Gt => Cond::Gt,
                Test::Ge => Cond::Ge,
            };
            let (jt, jf) = (to(asm, block.t), to(asm, block.f));
            asm.branch(cond, n.datum, jt, jf);
        }
        for (r, l) in rets {
            asm.bind(l);
            asm.ret(r);
        }
    }

    /// The block for node `id` when its level falls through to `fall`.
    fn block(
        &self,
        id: Id,
        fall: Goto,
        blocks: &mut Vec<Option<Block>>,
        seen: &mut HashMap<(Id, Goto), usize>,
        order: &mut Vec<usize>,
    ) -> usize {
        if let Some(&b) = seen.get(&(id, fall)) {
            return b;
        }
        let b = blocks.len();
        blocks.push(None);
        seen.insert((id, fall), b);
        let n = self.node(id);
        let after = match n.after {
            Some(s) => Goto::Block(self.block(s, fall, blocks, seen, order)),
            None => fall,
        };
        let mut target = |o: &Outcome, blocks: &mut Vec<Option<Block>>| match o.next {
            Some(level) => Goto::Block(self.block(self.first(level), after, blocks, seen, order)),
            None if o.acts => Goto::Ret(o.action),
            None => after,
        };
        let t = target(&n.t, blocks);
        let f = target(&n.f, blocks);
        blocks[b] = Some(Block { node: id, t, f });
        order.push(b);
        b
    }
}

struct Builder {
    nodes: Vec<Node>,
}

impl Builder {
    fn add(&mut self, arg: &Arg, high: bool, test: Test, mask: u64, datum: u64) -> Id {
        let half = |v: u64| if high { (v >> 32) as u32 } else { v as u32 };
        let mask = half(mask);
        self.nodes.push(Node {
            arg: arg.index,
            high,
            test,
            cmp: arg.cmp,
            mask,
            datum: half(datum) & mask,
            full: arg.value,
            t: Outcome::default(),
            f: Outcome::default(),
            prev: None,
            after: None,
            removed: false,
        });
        self.nodes.len() - 1
    }

    fn out(&mut self, id: Id, holds: bool) -> &mut Outcome {
        self.nodes[id].outcome_mut(holds)
    }

    /// One rule's chain, as libseccomp generates it; `None` when every
    /// condition always holds.
    fn chain(&mut self, action: u32, args: &[Arg], wide: bool) -> Option<Id> {
        let mut head = None;
        // The outcomes of the previous condition that mean "it holds".
        let mut ends: Vec<(Id, bool)> = Vec::new();
        for arg in args {
            let (mask, datum) = match arg.cmp {
                Cmp::MaskedEq(m) => (m, arg.value),
                _ => (u64::MAX, arg.value),
            };
            let (first, holds) = if wide {
                if mask == 0 {
                    continue;
                }
                match arg.cmp {
                    Cmp::Gt | Cmp::Ge | Cmp::Lt | Cmp::Le => {
                        let above = self.add(arg, true, Test::Gt, mask, datum);
                        let equal = self.add(arg, true, Test::Eq, mask, datum);
                        let low_test = if matches!(arg.cmp, Cmp::Gt | Cmp::Le) {
                            Test::Gt
                        } else {
                            Test::Ge
                        };
                        let low = self.add(arg, false, low_test, mask, datum);
                        self.out(above, false).next = Some(equal);
                        self.out(equal, true).next = Some(low);
                        let holds = if matches!(arg.cmp, Cmp::Gt | Cmp::Ge) {
                            vec![(above, true), (low, true)]
                        } else {
                            vec![(equal, false), (low, false)]
                        };
                        (above, holds)
                    }
                    Cmp::Eq | Cmp::Ne | Cmp::MaskedEq(_) => {
                        let test = if matches!(arg.cmp, Cmp::MaskedEq(_)) {
                            Test::MaskedEq
                        } else {
                            Test::Eq
                        };
                        let high = self.add(arg, true, test, mask, datum);
                        let low = self.add(arg, false, test, mask, datum);
                        self.out(high, true).next = Some(low);
                        let holds = if arg.cmp == Cmp::Ne {
                            vec![(high, false), (low, false)]
                        } else {
                            vec![(low, true)]
                        };
                        (high, holds)
                    }
                }
            } else {
                if mask as u32 == 0 {
                    continue;
                }
                let (test, holds) = match arg.cmp {
                    Cmp::Eq => (Test::Eq, true),
                    Cmp::MaskedEq(_) => (Test::MaskedEq, true),
                    Cmp::Gt => (Test::Gt, true),
                    Cmp::Ge => (Test::Ge, true),
                    Cmp::Ne => (Test::Eq, false),
                    Cmp::Lt => (Test::Ge, false),
                    Cmp::Le => (Test::Gt, false),
                };
                let node = self.add(arg, false, test, mask, datum);
                (node, vec![(node, holds)])
            };
            match head {
                None => head = Some(first),
                Some(_) => {
                    for &(id, h) in &ends {
                        self.out(id, h).next = Some(first);
                    }
                }
            }
            ends = holds;
        }
        for &(id, h) in &ends {
            *self.out(id, h) = Outcome::act(action);
        }
        head
    }
}

/// How a pruning walk relates the new chain to the tree.
#[derive(Clone, Copy)]
struct Walk {
    flags: u32,
    /// The new rule's action.
    action: u32,
}

const MATCH: u32 = 0x1;
const MATCH_ONCE: u32 = 0x2;
const MATCH_SET: u32 = MATCH | MATCH_ONCE;
const X_FINISHED: u32 = 0x10;
const N_FINISHED: u32 = 0x20;
const X_PREFIX: u32 = 0x100;
const N_PREFIX: u32 = 0x200;
/// The tree already ends where the new chain goes on: the chain is dropped.
const REDUNDANT: u32 = MATCH | X_FINISHED | N_PREFIX;

struct Slots<'a> {
    root: &'a mut Option<Id>,
    nodes: &'a mut Vec<Node>,
    /// Work done, against [`BUDGET`]: past it, every walk stops early.
    steps: usize,
}

impl Slots<'_> {
    /// Counts a step; false once the budget is spent.
    fn tick(&mut self) -> bool {
        self.steps += 1;
        self.steps <= BUDGET
    }

    /// Whether walking the tree ends: no level's links and no path from a
    /// node through its outcomes and the nodes after it come back to it.
    fn acyclic(&self) -> bool {
        let n = self.nodes.len();
        let ends = |mut id: Id, step: fn(&Node) -> Option<Id>| {
            for _ in 0..=n {
                match step(&self.nodes[id]) {
                    Some(x) => id = x,
                    None => return true,
                }
            }
            false
        };
        if !(0..n).all(|id| ends(id, |x| x.prev) && ends(id, |x| x.after)) {
            return false;
        }
        // Depth-first, colouring nodes: 1 on the current path, 2 done.
        let mut colour = vec![0u8; n];
        let Some(root) = *self.root else {
            return true;
        };
        let mut stack = vec![(self.first_in(root), false)];
        while let Some((id, leaving)) = stack.pop() {
            if leaving {
                colour[id] = 2;
                continue;
            }
            match colour[id] {
                1 => return false,
                2 => continue,
                _ => {}
            }
            colour[id] = 1;
            stack.push((id, true));
            let node = &self.nodes[id];
            for next in [node.after, node.t.next, node.f.next].into_iter().flatten() {
                let next = if Some(next) == node.after {
                    next
                } else {
                    self.first_in(next)
                };
                if colour[next] == 1 {
                    return false;
                }
                stack.push((next, false));
            }
        }
        true
    }

    /// The first node of a level whose links are known to end.
    fn first_in(&self, mut id: Id) -> Id {
        while let Some(p) = self.nodes[id].prev {
            id = p;
        }
        id
    }
    fn get(&self, s: Slot) -> Id {
        match s {
            Slot::Root => self.root.expect("merging into a tree"),
            Slot::Branch(id, h) => self.nodes[id]
                .outcome(h)
                .next
                .expect("merging into a level"),
        }
    }

    fn set(&mut self, s: Slot, to: Id) {
        match s {
            Slot::Root => *self.root = Some(to),
            Slot::Branch(id, h) => self.nodes[id].outcome_mut(h).next = Some(to),
        }
    }

    /// Whether every action under `level` (all its nodes and below) is `action`.
    fn all_act(&mut self, level: Option<Id>, action: u32) -> bool {
        let Some(id) = level else {
            return true;
        };
        let mut at = Some(self.first(id));
        while let Some(id) = at {
            if !self.tick() {
                return false;
            }
            let n = &self.nodes[id];
            for o in [&n.t, &n.f] {
                if o.acts && o.action != action {
                    return false;
                }
            }
            let (t, f, after) = (n.t.next, n.f.next, n.after);
            if !self.all_act(t, action) || !self.all_act(f, action) {
                return false;
            }
            at = after;
        }
        true
    }

    fn first(&mut self, mut id: Id) -> Id {
        while let Some(p) = self.nodes[id].prev {
            if !self.tick() {
                break;
            }
            id = p;
        }
        id
    }

    /// Whether an outcome leads anywhere: an action or a level.
    fn leads(o: &Outcome) -> bool {
        o.acts || o.next.is_some()
    }

    /// libseccomp's pruning pass: walks the tree `existing` (a level and
    /// below) beside the new chain `new`, recording in `st` how they
    /// relate, and removes nodes of the tree the new chain makes redundant.
    /// Returns how many nodes it removed.
    fn prune(&mut self, existing: Option<Id>, new: Option<Id>, st: &mut Walk) -> usize {
        let mut removed = 0;
        let mut mine = *st;
        let (Some(x0), Some(n)) = (existing, new) else {
            return removed;
        };
        if st.flags & MATCH_SET == MATCH_ONCE {
            return removed;
        }
        let mut at = Some(self.first(x0));
        'level: {
            'next: while let Some(x) = at {
                if !self.tick() {
                    break 'level;
                }
                let x_after = self.nodes[x].after;
                let (xn, nn) = (self.nodes[x].clone(), self.nodes[n].clone());
                if xn.same(&nn) {
                    mine.flags |= MATCH_SET;
                    if nn.is_leaf() {
                        mine.flags |= N_FINISHED;
                    }
                    if xn.is_leaf() {
                        mine.flags |= X_FINISHED;
                    }
                    if (Self::leads(&xn.t) && !Self::leads(&nn.t))
                        || (Self::leads(&xn.f) && !Self::leads(&nn.f))
                    {
                        break 'level;
                    }
                    if mine.flags & N_FINISHED != 0
                        && mine.flags & X_FINISHED != 0
                        && (nn.t.acts != xn.t.acts
                            || nn.t.action != xn.t.action
                            || nn.f.acts != xn.f.acts
                            || nn.f.action != xn.f.action)
                    {
                        break 'level;
                    }
                    for holds in [true, false] {
                        let Some(sub) = nn.outcome(holds).next else {
                            continue;
                        };
                        let mut next = Walk {
                            flags: st.flags | MATCH_SET,
                            ..*st
                        };
                        let down = self.nodes[x].outcome(holds).next;
                        removed += self.prune(down, Some(sub), &mut next);
                        if next.flags & MATCH != 0 {
                            mine.flags |= next.flags;
                        }
                        if self.nodes[x].removed {
                            at = x_after;
                            continue 'next;
                        }
                    }
                    let agrees = self.all_act(Some(x), mine.action);
                    if agrees
                        && mine.flags & MATCH != 0
                        && mine.flags & N_FINISHED != 0
                        && mine.flags & X_PREFIX != 0
                    {
                        // The new chain is shorter: the tree's goes.
                        removed += self.remove(Slot::Root, x);
                        if self.root.is_none() {
                            break 'level;
                        }
                    } else if agrees
                        && mine.flags & MATCH != 0
                        && mine.flags & X_FINISHED != 0
                        && mine.flags & N_PREFIX != 0
                    {
                        break 'level;
                    }
                } else if xn.below(&nn) {
                    if st.flags & N_PREFIX != 0 {
                        break 'level;
                    }
                    for holds in [true, false] {
                        let Some(sub) = self.nodes[x].outcome(holds).next else {
                            continue;
                        };
                        let mut next = Walk {
                            flags: (st.flags & !MATCH) | X_PREFIX,
                            ..*st
                        };
                        removed += self.prune(Some(sub), Some(n), &mut next);
                        if next.flags & MATCH != 0 {
                            mine.flags |= next.flags;
                            break 'level;
                        }
                        if self.nodes[x].removed {
                            break;
                        }
                    }
                } else {
                    if st.flags & X_PREFIX != 0 {
                        break 'level;
                    }
                    for holds in [true, false] {
                        let Some(sub) = nn.outcome(holds).next else {
                            continue;
                        };
                        let mut next = Walk {
                            flags: (st.flags & !MATCH) | N_PREFIX,
                            ..*st
                        };
                        removed += self.prune(Some(x), Some(sub), &mut next);
                        if next.flags & MATCH != 0 {
                            mine.flags |= next.flags;
                            break 'level;
                        }
                        if self.nodes[x].removed {
                            break;
                        }
                    }
                }
                at = x_after;
            }
            // Nothing on this level matched.
            mine.flags &= !MATCH;
        }
        if mine.flags & MATCH != 0 {
            st.flags |= mine.flags;
        } else {
            st.flags &= !MATCH;
        }
        removed
    }

    /// Takes node `target` out of the tree below `slot`, and with it any
    /// node left without outcomes on the way; how many were taken out.
    fn remove(&mut self, slot: Slot, target: Id) -> usize {
        let Some(start) = self.peek(slot) else {
            return 0;
        };
        let mut at = Some(self.first(start));
        let mut removed = 0;
        while let Some(c) = at {
            if !self.tick() {
                return removed;
            }
            if c == target {
                return removed + self.unlink(slot, c);
            }
            removed += self.remove(Slot::Branch(c, true), target);
            removed += self.remove(Slot::Branch(c, false), target);
            let n = &self.nodes[c];
            if n.is_leaf() && !n.t.acts && !n.f.acts {
                return removed + self.unlink(slot, c);
            }
            if removed > 0 {
                return removed;
            }
            at = self.nodes[c].after;
        }
        removed
    }

    /// Unlinks `c` from its level, moving `slot` off it if it pointed there.
    fn unlink(&mut self, slot: Slot, c: Id) -> usize {
        let (p, a) = (self.nodes[c].prev, self.nodes[c].after);
        if self.peek(slot) == Some(c) {
            self.put(slot, p.or(a));
        }
        if let Some(p) = p {
            self.nodes[p].after = a;
        }
        if let Some(a) = a {
            self.nodes[a].prev = p;
        }
        let n = &mut self.nodes[c];
        n.prev = None;
        n.after = None;
        n.removed = true;
        1
    }

    fn peek(&self, s: Slot) -> Option<Id> {
        match s {
            Slot::Root => *self.root,
            Slot::Branch(id, h) => self.nodes[id].outcome(h).next,
        }
    }

    fn put(&mut self, s: Slot, to: Option<Id>) {
        match s {
            Slot::Root => *self.root = to,
            Slot::Branch(id, h) => self.nodes[id].outcome_mut(h).next = to,
        }
    }

    /// Merges the chain starting at `new` into the level `slot` points to.
    fn merge(&mut self, slot: Slot, new: Id) -> Result<(), ()> {
        let mut x = self.get(slot);
        loop {
            if !self.tick() {
                return Ok(());
            }
            if self.nodes[x].same(&self.nodes[new]) {
                return self.merge_same(x, new);
            }
            if !self.nodes[x].below(&self.nodes[new]) {
                match self.nodes[x].after {
                    Some(a) => x = a,
                    None => {
                        self.nodes[new].prev = Some(x);
                        self.nodes[x].after = Some(new);
                        return Ok(());
                    }
                }
                continue;
            }
            // Insert before x.
            if let Some(p) = self.nodes[x].prev {
                self.nodes[p].after = Some(new);
                self.nodes[new].prev = Some(p);
            }
            self.nodes[x].prev = Some(new);
            self.nodes[new].after = Some(x);
            if self.get(slot) == x {
                self.set(slot, new);
            }
            return Ok(());
        }
    }

    /// Merges node `new` into the equal node `x`.
    fn merge_same(&mut self, x: Id, new: Id) -> Result<(), ()> {
        for holds in [true, false] {
            let n = self.nodes[new].clone();
            let no = *n.outcome(holds);
            if !no.acts {
                continue;
            }
            let xo = *self.nodes[x].outcome(holds);
            if !xo.acts {
                // The new chain ends here: what x led to must agree.
                if !self.all_act(xo.next, no.action) {
                    return Err(());
                }
                *self.nodes[x].outcome_mut(holds) = Outcome::act(no.action);
            } else if no.action != xo.action {
                // For a high half, the larger bound of `>`/`>=` takes the
                // true outcome, and, as libseccomp has it, the smaller
                // bound of `<`/`<=` also writes the true outcome's action.
                let full = self.nodes[x].full;
                if n.high && (if holds { n.full > full } else { n.full < full }) {
                    self.nodes[x].t.action = n.t.action;
                }
                if self.nodes[x].is_leaf() || n.is_leaf() {
                    return Err(());
                }
            }
        }
        for holds in [true, false] {
            let Some(nn) = self.nodes[new].outcome(holds).next else {
                continue;
            };
            let xo = *self.nodes[x].outcome(holds);
            if xo.next.is_some() {
                self.merge(Slot::Branch(x, holds), nn)?;
            } else if !xo.acts {
                self.nodes[x].outcome_mut(holds).next = Some(nn);
            } else {
                // The tree already decides here, sooner.
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: u32 = 0x0005_0000 | 2101;
    const B: u32 = 0x0005_0000 | 2102;
    const DEF: u32 = 0x0005_0000 | 2100;

    fn arg(index: u8, cmp: Cmp, value: u64) -> Arg {
        Arg { index, cmp, value }
    }

    fn a0(v: u64) -> [u64; 6] {
        [v, 0, 0, 0, 0, 0]
    }

    #[test]
    fn a_bound_below_sorts_before_one_above_in_either_order() {
        let ge = (A, vec![arg(0, Cmp::Ge, 10)]);
        let le = (B, vec![arg(0, Cmp::Le, 20)]);
        for wide in [true, false] {
            for rules in [[ge.clone(), le.clone()], [le.clone(), ge.clone()]] {
                let t = Tree::build(&rules, wide).unwrap();
                assert_eq!(t.decide(&a0(15), DEF), B);
                assert_eq!(t.decide(&a0(5), DEF), B);
                assert_eq!(t.decide(&a0(25), DEF), A);
            }
        }
    }

    #[test]
    fn the_larger_lower_bound_is_tried_first() {
        let t = Tree::build(
            &[
                (A, vec![arg(0, Cmp::Ge, 10)]),
                (B, vec![arg(0, Cmp::Ge, 20)]),
            ],
            true,
        )
        .unwrap();
        assert_eq!(t.decide(&a0(25), DEF), B);
        assert_eq!(t.decide(&a0(15), DEF), A);
        assert_eq!(t.decide(&a0(5), DEF), DEF);
        // The high half: the larger bound's action.
        assert_eq!(t.decide(&a0(1 << 32), DEF), B);
    }

    #[test]
    fn the_same_test_ending_two_rules_with_different_actions_conflicts() {
        let rules = [(A, vec![arg(0, Cmp::Eq, 5)]), (B, vec![arg(0, Cmp::Eq, 5)])];
        assert_eq!(Tree::build(&rules, true), Err(Refusal::Conflict(1)));
        assert_eq!(Tree::build(&rules, false), Err(Refusal::Conflict(1)));
        // A shorter rule cannot end where a longer one with another action goes on.
        let rules = [
            (A, vec![arg(0, Cmp::Eq, 5), arg(1, Cmp::Eq, 1)]),
            (B, vec![arg(0, Cmp::Eq, 5)]),
        ];
        assert_eq!(Tree::build(&rules, true), Err(Refusal::Conflict(1)));
    }

    #[test]
    fn emitted_program_walks_the_tree() {
        use super::super::interp::{Data, run};
        let rules = [
            (A, vec![arg(0, Cmp::Ge, 10), arg(1, Cmp::Ne, 3)]),
            (B, vec![arg(0, Cmp::Le, 20)]),
            (A | 7, vec![arg(1, Cmp::MaskedEq(0xf0), 0x30)]),
        ];
        let t = Tree::build(&rules, true).unwrap();
        let mut asm = Asm::default();
        t.emit(&mut asm, DEF);
        let prog = asm.assemble().unwrap();
        for v0 in [0, 5, 10, 15, 20, 25, 1 << 32, u64::MAX] {
            for v1 in [0, 3, 0x31, 0x1_0000_0003] {
                let args = [v0, v1, 0, 0, 0, 0];
                let d = Data {
                    args,
                    ..Data::default()
                };
                assert_eq!(run(&prog, &d).ret, t.decide(&args, DEF), "{args:x?}");
            }
        }
    }
}
