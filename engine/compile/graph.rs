//! The step DAG: cycle detection, execution order and ancestry.
//!
//! Execution is serial (one disruptive action at a time is the point), so the order is a
//! topological sort that breaks ties by declaration order: the plan runs the way it reads.
//! Cycles are reported with the steps that form them (turborepo's `validate_graph`).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

/// A dependency graph over instance indices (declaration order).
pub struct Deps {
    graph: DiGraph<usize, ()>,
}

impl Deps {
    /// A graph of `n` instances with edges `needs[i] -> i`.
    pub fn new(n: usize, needs: &[Vec<usize>]) -> Deps {
        let mut graph = DiGraph::with_capacity(n, n);
        for i in 0..n {
            graph.add_node(i);
        }
        for (i, deps) in needs.iter().enumerate() {
            for &d in deps {
                graph.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
            }
        }
        Deps { graph }
    }

    /// Every cycle, each as instance indices in cycle order starting from the earliest.
    pub fn cycles(&self) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        for scc in tarjan_scc(&self.graph) {
            let members: BTreeSet<usize> = scc.iter().map(|n| n.index()).collect();
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() < 2 && !self_loop {
                continue;
            }
            // Walk successors inside the component to print it in cycle order.
            let Some(&start) = members.first() else {
                continue;
            };
            let mut path = vec![start];
            let mut cur = start;
            loop {
                let next = self
                    .graph
                    .edges(NodeIndex::new(cur))
                    .map(|e| e.target().index())
                    .filter(|t| members.contains(t))
                    .find(|t| !path.contains(t) || *t == start);
                match next {
                    Some(t) if t == start => break,
                    Some(t) => {
                        path.push(t);
                        cur = t;
                    }
                    None => break,
                }
            }
            out.push(path);
        }
        out.sort();
        out
    }

    /// Topological order, ties broken by declaration order. Call only on an acyclic graph.
    pub fn order(&self) -> Vec<usize> {
        let n = self.graph.node_count();
        let mut indegree: Vec<usize> = (0..n)
            .map(|i| {
                self.graph
                    .edges_directed(NodeIndex::new(i), petgraph::Direction::Incoming)
                    .count()
            })
            .collect();
        let mut ready: BinaryHeap<Reverse<usize>> =
            (0..n).filter(|i| indegree[*i] == 0).map(Reverse).collect();
        let mut out = Vec::with_capacity(n);
        while let Some(Reverse(i)) = ready.pop() {
            out.push(i);
            for e in self.graph.edges(NodeIndex::new(i)) {
                let t = e.target().index();
                indegree[t] -= 1;
                if indegree[t] == 0 {
                    ready.push(Reverse(t));
                }
            }
        }
        out
    }

    /// Every instance that must finish before `i` (transitive dependencies).
    pub fn ancestors(&self, i: usize) -> BTreeSet<usize> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![i];
        while let Some(cur) = stack.pop() {
            for e in self
                .graph
                .edges_directed(NodeIndex::new(cur), petgraph::Direction::Incoming)
            {
                let s = e.source().index();
                if seen.insert(s) {
                    stack.push(s);
                }
            }
        }
        seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_breaks_ties_by_declaration() {
        // 0 and 2 are roots; 1 needs 2.
        let g = Deps::new(3, &[vec![], vec![2], vec![]]);
        assert_eq!(g.order(), vec![0, 2, 1]);
        assert!(g.cycles().is_empty());
        assert_eq!(g.ancestors(1), BTreeSet::from([2]));
    }

    #[test]
    fn finds_cycles_in_order() {
        let g = Deps::new(4, &[vec![2], vec![0], vec![1], vec![3]]);
        assert_eq!(g.cycles(), vec![vec![0, 1, 2], vec![3]]);
    }
}
