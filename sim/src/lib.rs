//! Event-driven simulator of every tokenq serving policy (MATH.md §11, SERVING.md).

pub mod continuous;
