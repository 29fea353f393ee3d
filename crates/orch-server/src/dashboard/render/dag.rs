//! A workflow's tasks and their dependencies as an SVG graph, left to right: a layered layout
//! (each task one layer right of its deepest dependency: longest-path layering), edges that
//! span layers routed through virtual points, and within each layer the order that a few
//! barycentric sweeps find (each node placed at the mean position of its neighbours in the layer
//! before, then after), which removes most crossings in the small graphs workflows are.
//! Nodes link to their task pages and carry `data-task` and a `status-*` class, so the page's
//! script can recolour them live.
//!
//! Written here rather than taken from a crate: the Rust ports of dagre are young single
//! releases with large APIs, the graphviz-like crates draw their own styled SVG that cannot
//! carry our links, classes and data attributes, and this layout is a hundred lines of pure code
//! with tests.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::{class_token, push_escaped, shorten};

/// One task of the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DagNode {
    /// The task's id.
    pub id: i64,
    /// Its title (untrusted text).
    pub title: String,
    /// Its status (`queued`, `running`, `done`, ...).
    pub status: String,
}

const NODE_WIDTH: i64 = 190;
const NODE_HEIGHT: i64 = 46;
const GAP_X: i64 = 70;
const GAP_Y: i64 = 22;
const MARGIN: i64 = 12;
const SWEEPS: usize = 12;

/// Where each node and each edge's points are.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Layer (column) of each real node, by id.
    pub layer: BTreeMap<i64, usize>,
    /// Position within its layer of each real node, by id.
    pub position: BTreeMap<i64, usize>,
    /// Each layer's vertices in order (real ids, or `None` for an edge's virtual point).
    layers: Vec<Vec<Vertex>>,
    /// Each edge as the vertices it passes, from the dependency to the dependent.
    paths: Vec<Vec<Vertex>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Vertex {
    Task(i64),
    /// The `n`-th virtual point (an edge crossing a layer).
    Point(usize),
}

/// Lay out `nodes` with `edges` as `(dependency, dependent)` pairs; edges naming unknown tasks
/// and self-loops are ignored, and tasks on a cycle (which a stored workflow never has) are put
/// in one last layer.
pub fn layout(nodes: &[DagNode], edges: &[(i64, i64)]) -> Layout {
    let ids: BTreeSet<i64> = nodes.iter().map(|n| n.id).collect();
    let edges: BTreeSet<(i64, i64)> = edges
        .iter()
        .copied()
        .filter(|(a, b)| a != b && ids.contains(a) && ids.contains(b))
        .collect();
    // Longest-path layering in topological order (Kahn).
    let mut indegree: BTreeMap<i64, usize> = ids.iter().map(|id| (*id, 0)).collect();
    for (_, to) in &edges {
        *indegree.entry(*to).or_default() += 1;
    }
    let mut ready: Vec<i64> = indegree
        .iter()
        .filter(|(_, d)| **d == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut layer: BTreeMap<i64, usize> = BTreeMap::new();
    while let Some(id) = ready.pop() {
        let depth = edges
            .iter()
            .filter(|(_, to)| *to == id)
            .filter_map(|(from, _)| layer.get(from).map(|l| l + 1))
            .max()
            .unwrap_or(0);
        layer.insert(id, depth);
        for (_, to) in edges.iter().filter(|(from, _)| *from == id) {
            if let Some(d) = indegree.get_mut(to) {
                *d -= 1;
                if *d == 0 {
                    ready.push(*to);
                }
            }
        }
    }
    let last = layer.values().max().map_or(0, |l| l + 1);
    for id in &ids {
        layer.entry(*id).or_insert(last);
    }
    let layer_count = layer.values().max().map_or(0, |l| l + 1);
    let mut layers: Vec<Vec<Vertex>> = vec![Vec::new(); layer_count];
    for id in &ids {
        layers[layer[id]].push(Vertex::Task(*id));
    }
    // Edges spanning several layers pass through one virtual point per layer crossed. An edge
    // going backwards (only on a cycle) is drawn straight.
    let mut paths = Vec::new();
    let mut points = 0usize;
    for (from, to) in &edges {
        let (start, end) = (layer[from], layer[to]);
        let mut path = vec![Vertex::Task(*from)];
        for crossed in layers.iter_mut().take(end.max(start)).skip(start + 1) {
            if end <= start {
                break;
            }
            let point = Vertex::Point(points);
            points += 1;
            crossed.push(point);
            path.push(point);
        }
        path.push(Vertex::Task(*to));
        paths.push(path);
    }
    // Neighbours of each vertex in the layer before and after.
    let mut before: BTreeMap<Vertex, Vec<Vertex>> = BTreeMap::new();
    let mut after: BTreeMap<Vertex, Vec<Vertex>> = BTreeMap::new();
    for path in &paths {
        for pair in path.windows(2) {
            after.entry(pair[0]).or_default().push(pair[1]);
            before.entry(pair[1]).or_default().push(pair[0]);
        }
    }
    let mut best = layers.clone();
    let mut best_crossings = crossings(&layers, &after);
    for sweep in 0..SWEEPS {
        if sweep % 2 == 0 {
            for i in 1..layers.len() {
                let (done, rest) = layers.split_at_mut(i);
                order_by_barycenter(&mut rest[0], &done[i - 1], &before);
            }
        } else {
            for i in (0..layers.len().saturating_sub(1)).rev() {
                let (rest, done) = layers.split_at_mut(i + 1);
                order_by_barycenter(&mut rest[i], &done[0], &after);
            }
        }
        let now = crossings(&layers, &after);
        if now < best_crossings {
            best_crossings = now;
            best = layers.clone();
        }
    }
    let layers = best;
    let mut position = BTreeMap::new();
    for vertices in &layers {
        for (i, vertex) in vertices.iter().enumerate() {
            if let Vertex::Task(id) = vertex {
                position.insert(*id, i);
            }
        }
    }
    Layout {
        layer,
        position,
        layers,
        paths,
    }
}

/// Sort `layer` by the mean position of each vertex's neighbours in `fixed` (a vertex without
/// any keeps its place), stably.
fn order_by_barycenter(
    layer: &mut [Vertex],
    fixed: &[Vertex],
    neighbours: &BTreeMap<Vertex, Vec<Vertex>>,
) {
    let index: BTreeMap<Vertex, usize> = fixed.iter().enumerate().map(|(i, v)| (*v, i)).collect();
    let mut keyed: Vec<(f64, usize, Vertex)> = layer
        .iter()
        .enumerate()
        .map(|(current, vertex)| {
            let positions: Vec<usize> = neighbours
                .get(vertex)
                .map(|ns| ns.iter().filter_map(|n| index.get(n).copied()).collect())
                .unwrap_or_default();
            let key = if positions.is_empty() {
                current as f64
            } else {
                positions.iter().sum::<usize>() as f64 / positions.len() as f64
            };
            (key, current, *vertex)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (slot, (_, _, vertex)) in layer.iter_mut().zip(keyed) {
        *slot = vertex;
    }
}

/// Edge crossings between consecutive layers.
fn crossings(layers: &[Vec<Vertex>], after: &BTreeMap<Vertex, Vec<Vertex>>) -> usize {
    let mut total = 0;
    for pair in layers.windows(2) {
        let next: BTreeMap<Vertex, usize> =
            pair[1].iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let mut segments = Vec::new();
        for (i, vertex) in pair[0].iter().enumerate() {
            for target in after.get(vertex).into_iter().flatten() {
                if let Some(j) = next.get(target) {
                    segments.push((i, *j));
                }
            }
        }
        for (a, first) in segments.iter().enumerate() {
            for second in &segments[a + 1..] {
                if (first.0 < second.0 && first.1 > second.1)
                    || (first.0 > second.0 && first.1 < second.1)
                {
                    total += 1;
                }
            }
        }
    }
    total
}

/// The graph as an `<svg>` element.
pub fn render(nodes: &[DagNode], edges: &[(i64, i64)]) -> String {
    let layout = layout(nodes, edges);
    let tallest = layout.layers.iter().map(Vec::len).max().unwrap_or(0) as i64;
    let width = MARGIN * 2 + layout.layers.len() as i64 * (NODE_WIDTH + GAP_X) - GAP_X;
    let height = MARGIN * 2 + tallest * (NODE_HEIGHT + GAP_Y) - GAP_Y;
    let (width, height) = (width.max(NODE_WIDTH), height.max(NODE_HEIGHT));
    // The top-left corner of each vertex's box; layers are centred vertically.
    let mut place: BTreeMap<Vertex, (i64, i64)> = BTreeMap::new();
    for (column, vertices) in layout.layers.iter().enumerate() {
        let offset = (tallest - vertices.len() as i64) * (NODE_HEIGHT + GAP_Y) / 2;
        for (row, vertex) in vertices.iter().enumerate() {
            place.insert(
                *vertex,
                (
                    MARGIN + column as i64 * (NODE_WIDTH + GAP_X),
                    MARGIN + offset + row as i64 * (NODE_HEIGHT + GAP_Y),
                ),
            );
        }
    }
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg class=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" \
         aria-label=\"workflow graph\">\n<defs><marker id=\"dag-arrow\" viewBox=\"0 0 10 10\" \
         refX=\"10\" refY=\"5\" markerWidth=\"7\" markerHeight=\"7\" orient=\"auto\">\
         <path d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n"
    );
    for path in &layout.paths {
        let points: Vec<(i64, i64)> = path
            .iter()
            .enumerate()
            .filter_map(|(i, vertex)| {
                let (x, y) = *place.get(vertex)?;
                let middle = y + NODE_HEIGHT / 2;
                Some(match vertex {
                    Vertex::Task(_) if i == 0 => (x + NODE_WIDTH, middle),
                    Vertex::Task(_) => (x, middle),
                    Vertex::Point(_) => (x + NODE_WIDTH / 2, middle),
                })
            })
            .collect();
        let Some(((x0, y0), rest)) = points.split_first() else {
            continue;
        };
        let mut d = format!("M{x0},{y0}");
        let mut previous = (*x0, *y0);
        for (x, y) in rest {
            let bend = (x - previous.0) / 2;
            let _ = write!(
                d,
                " C{},{} {},{} {x},{y}",
                previous.0 + bend,
                previous.1,
                x - bend,
                y
            );
            previous = (*x, *y);
        }
        let (from, to) = match (path.first(), path.last()) {
            (Some(Vertex::Task(a)), Some(Vertex::Task(b))) => (*a, *b),
            _ => continue,
        };
        let _ = writeln!(
            svg,
            "<path class=\"dag-edge\" data-from=\"{from}\" data-to=\"{to}\" d=\"{d}\" \
             marker-end=\"url(#dag-arrow)\"/>"
        );
    }
    for node in nodes {
        let Some((x, y)) = place.get(&Vertex::Task(node.id)) else {
            continue;
        };
        let _ = write!(
            svg,
            "<a class=\"dag-node status-{}\" href=\"/tasks/{id}\" data-task=\"{id}\" \
             data-status=\"{}\"><title>",
            class_token(&node.status),
            class_token(&node.status),
            id = node.id,
        );
        let _ = write!(svg, "#{} ", node.id);
        push_escaped(&mut svg, &shorten(&node.title, 300));
        let _ = write!(
            svg,
            " ({})</title><rect x=\"{x}\" y=\"{y}\" width=\"{NODE_WIDTH}\" \
             height=\"{NODE_HEIGHT}\" rx=\"6\"/><text class=\"dag-id\" x=\"{}\" y=\"{}\">#{} · ",
            class_token(&node.status),
            x + 10,
            y + 18,
            node.id
        );
        push_escaped(&mut svg, &class_token(&node.status));
        let _ = write!(
            svg,
            "</text><text class=\"dag-title\" x=\"{}\" y=\"{}\">",
            x + 10,
            y + 36
        );
        push_escaped(&mut svg, &shorten(&node.title, 26));
        svg.push_str("</text></a>\n");
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: i64, status: &str) -> DagNode {
        DagNode {
            id,
            title: format!("task {id}"),
            status: status.to_owned(),
        }
    }

    #[test]
    fn layers_are_longest_paths() {
        // 1 → 2 → 3, and 1 → 3 directly: 3 is two layers right of 1, not one.
        let nodes = [
            node(1, "done"),
            node(2, "running"),
            node(3, "queued"),
            node(4, "queued"),
        ];
        let l = layout(&nodes, &[(1, 2), (2, 3), (1, 3)]);
        assert_eq!(l.layer[&1], 0);
        assert_eq!(l.layer[&2], 1);
        assert_eq!(l.layer[&3], 2);
        assert_eq!(l.layer[&4], 0);
        // The long edge passes through one virtual point in layer 1.
        assert_eq!(l.layers[1].len(), 2);
    }

    #[test]
    fn barycentric_sweeps_remove_avoidable_crossings() {
        // Sources 1, 2 and targets 3, 4 where 1 → 4 and 2 → 3: ordering by id alone crosses.
        let nodes = [
            node(1, "done"),
            node(2, "done"),
            node(3, "queued"),
            node(4, "queued"),
        ];
        let edges = [(1, 4), (2, 3)];
        let l = layout(&nodes, &edges);
        let mut after = BTreeMap::new();
        for (a, b) in edges {
            after
                .entry(Vertex::Task(a))
                .or_insert_with(Vec::new)
                .push(Vertex::Task(b));
        }
        assert_eq!(crossings(&l.layers, &after), 0);
        // A wider case: a bipartite graph with a crossing-free order exists.
        let nodes: Vec<_> = (1..=8).map(|i| node(i, "queued")).collect();
        let edges = [(1, 8), (2, 7), (3, 6), (4, 5)];
        let l = layout(&nodes, &edges);
        let mut after = BTreeMap::new();
        for (a, b) in edges {
            after
                .entry(Vertex::Task(a))
                .or_insert_with(Vec::new)
                .push(Vertex::Task(b));
        }
        assert_eq!(crossings(&l.layers, &after), 0);
    }

    #[test]
    fn cycles_unknown_ids_and_self_loops_do_not_hang_or_panic() {
        let nodes = [node(1, "queued"), node(2, "queued"), node(3, "queued")];
        let l = layout(&nodes, &[(1, 2), (2, 1), (3, 3), (9, 1)]);
        assert_eq!(l.layer.len(), 3);
        let svg = render(&nodes, &[(1, 2), (2, 1)]);
        assert!(svg.starts_with("<svg"));
        assert!(render(&[], &[]).starts_with("<svg"));
    }

    #[test]
    fn nodes_link_to_tasks_and_carry_status_classes() {
        let nodes = [node(1, "done"), node(2, "needs_review")];
        let svg = render(&nodes, &[(1, 2)]);
        assert!(svg.contains("<a class=\"dag-node status-done\" href=\"/tasks/1\" data-task=\"1\""));
        assert!(svg.contains("status-needs_review"));
        assert!(svg.contains("data-from=\"1\" data-to=\"2\""));
        assert_eq!(svg.matches("<path class=\"dag-edge\"").count(), 1);
    }

    #[test]
    fn hostile_titles_and_statuses_render_inert() {
        let nodes = [DagNode {
            id: 7,
            title: "</text><script>alert(1)</script><a href=\"javascript:alert(1)\">".to_owned(),
            status: "done\" onclick=\"alert(1)".to_owned(),
        }];
        let svg = render(&nodes, &[]);
        assert!(!svg.contains("<script"), "{svg}");
        assert!(!svg.contains("href=\"javascript"), "{svg}");
        assert!(!svg.contains("\" onclick"), "{svg}");
        assert_eq!(svg.matches("<a ").count(), 1);
        assert_eq!(svg.matches("</text>").count(), 2);
    }

    #[test]
    fn a_hundred_task_workflow_lays_out_quickly() {
        let nodes: Vec<_> = (1..=100).map(|i| node(i, "queued")).collect();
        let edges: Vec<_> = (2..=100).map(|i| (i / 2, i)).collect();
        let started = std::time::Instant::now();
        let svg = render(&nodes, &edges);
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_eq!(svg.matches("class=\"dag-node").count(), 100);
    }
}
