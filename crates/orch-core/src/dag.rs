//! Dependency graphs: topological order and cycle detection that names the cycle.

use std::collections::BTreeMap;

/// A dependency cycle, as the list of nodes in order; the first node depends on the last.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dependency cycle: {}", cycle_path(.nodes))]
pub struct CycleError {
    /// Indices of the nodes on the cycle, each one needed by the next.
    pub nodes: Vec<usize>,
}

fn cycle_path(nodes: &[usize]) -> String {
    let mut parts: Vec<String> = nodes.iter().map(|n| format!("#{n}")).collect();
    if let Some(first) = nodes.first() {
        parts.push(format!("#{first}"));
    }
    parts.join(" -> ")
}

/// Order nodes `0..needs.len()` so that every node comes after everything it needs.
///
/// `needs[i]` lists the nodes node `i` depends on. Ties keep the input order, so the result is
/// deterministic. A cycle is refused with the nodes on it.
pub fn topo_order(needs: &[Vec<usize>]) -> Result<Vec<usize>, CycleError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut marks = vec![Mark::New; needs.len()];
    let mut order = Vec::with_capacity(needs.len());
    // Iterative depth-first search so that long chains cannot overflow the stack.
    for root in 0..needs.len() {
        if marks[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        marks[root] = Mark::OnStack;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = needs[node].get(*next) {
                *next += 1;
                match marks[dep] {
                    Mark::New => {
                        marks[dep] = Mark::OnStack;
                        stack.push((dep, 0));
                    }
                    Mark::OnStack => {
                        let start = stack
                            .iter()
                            .position(|(n, _)| *n == dep)
                            .expect("a node marked on-stack is on the stack");
                        // The stack runs from dependents to dependencies; report the cycle in
                        // the "needed by" direction so it reads `a -> b` as "a is needed by b".
                        let mut nodes: Vec<usize> =
                            stack[start..].iter().map(|(n, _)| *n).collect();
                        nodes.reverse();
                        // Start at the earliest node so the message is the same however the
                        // search reached the cycle.
                        let first = nodes
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, n)| **n)
                            .map_or(0, |(i, _)| i);
                        nodes.rotate_left(first);
                        return Err(CycleError { nodes });
                    }
                    Mark::Done => {}
                }
            } else {
                marks[node] = Mark::Done;
                order.push(node);
                stack.pop();
            }
        }
    }
    Ok(order)
}

/// Map each node to the nodes that need it (the reverse edges).
pub fn dependents(needs: &[Vec<usize>]) -> BTreeMap<usize, Vec<usize>> {
    let mut map: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for (node, deps) in needs.iter().enumerate() {
        for &dep in deps {
            map.entry(dep).or_default().push(node);
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_diamond_orders_its_root_first_and_its_join_last() {
        // 0 = A, 1 = B, 2 = C, 3 = D; B and C need A; D needs B and C.
        let order = topo_order(&[vec![], vec![0], vec![0], vec![1, 2]]).unwrap();
        assert_eq!(order, vec![0, 1, 2, 3]);
    }

    #[test]
    fn a_cycle_is_refused_with_every_node_on_it() {
        // 0 needs 2, 1 needs 0, 2 needs 1; 3 hangs off the side.
        let err = topo_order(&[vec![2], vec![0], vec![1], vec![0]]).unwrap_err();
        let mut nodes = err.nodes.clone();
        nodes.sort();
        assert_eq!(nodes, vec![0, 1, 2]);
        assert_eq!(err.to_string(), "dependency cycle: #0 -> #1 -> #2 -> #0");
    }

    #[test]
    fn a_self_dependency_is_a_cycle_of_one() {
        let err = topo_order(&[vec![0]]).unwrap_err();
        assert_eq!(err.nodes, vec![0]);
    }

    proptest! {
        #[test]
        fn edges_that_only_point_backwards_always_sort_and_respect_every_edge(
            edges in proptest::collection::vec(proptest::collection::vec(0usize..40, 0..4), 1..40)
        ) {
            let needs: Vec<Vec<usize>> = edges
                .iter()
                .enumerate()
                .map(|(i, deps)| deps.iter().filter(|&&d| d < i).copied().collect())
                .collect();
            let order = topo_order(&needs).unwrap();
            prop_assert_eq!(order.len(), needs.len());
            let position: BTreeMap<usize, usize> = order.iter().enumerate().map(|(p, n)| (*n, p)).collect();
            for (node, deps) in needs.iter().enumerate() {
                for dep in deps {
                    prop_assert!(position[dep] < position[&node]);
                }
            }
        }

        #[test]
        fn a_reported_cycle_is_a_real_cycle(
            edges in proptest::collection::vec(proptest::collection::vec(0usize..12, 0..3), 1..12)
        ) {
            let needs: Vec<Vec<usize>> = edges
                .iter()
                .map(|deps| deps.iter().filter(|&&d| d < edges.len()).copied().collect())
                .collect();
            if let Err(err) = topo_order(&needs) {
                // Each node on the cycle is needed by the next one, wrapping around.
                let n = err.nodes.len();
                for i in 0..n {
                    let needed = err.nodes[i];
                    let needer = err.nodes[(i + 1) % n];
                    prop_assert!(needs[needer].contains(&needed), "{:?} in {:?}", err.nodes, needs);
                }
            }
        }
    }
}
