//! Who may wait for a connection of a full pool: `pool.max_waiting`, and shedding of low-priority clients
//! (`pool.shed_queue_depth`). Pure decisions over the configuration and the queue length, so they are
//! tested without a backend; the pool applies them when a client finds every connection busy.

use crate::config::PoolConfig;

/// Why a client was turned away at once instead of queueing. Each names the setting behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("all {size} connections{} are busy and pool.queue_mode is fail-fast (raise pool.pool_size or pool.reserve_pool_size, or set queue_mode = \"queue\" to wait)", reserve_note(*.reserve))]
    FailFast { size: u32, reserve: u32 },
    #[error("all {size} connections are busy and {max} clients are already waiting, the limit set by pool.max_waiting")]
    QueueFull { size: u32, max: u32 },
    #[error("shed as a low-priority client (pool.low_priority_users / low_priority_application_names): {waiting} clients are already waiting, pool.shed_queue_depth is {depth}")]
    Shed { waiting: u32, depth: u32 },
}

fn reserve_note(reserve: u32) -> String {
    if reserve == 0 {
        String::new()
    } else {
        format!(" and {reserve} reserve connections")
    }
}

/// Whose checkout this is: low-priority clients are shed first when a queue grows
/// (`pool.shed_queue_depth`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Priority {
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// A client's priority from who it logged in as (`pool.low_priority_users`) and the
    /// `application_name` it sent at login (`pool.low_priority_application_names`).
    pub fn of(config: &PoolConfig, user: &str, application_name: Option<&str>) -> Priority {
        let low = config.low_priority_users.iter().any(|u| u == user)
            || application_name
                .is_some_and(|a| config.low_priority_application_names.iter().any(|n| n == a));
        if low {
            Priority::Low
        } else {
            Priority::Normal
        }
    }
}

/// Whether a client that found every connection busy may join a queue that `waiting` clients are
/// already in. Fail-fast is not decided here: it depends on the reserve, which only the pool can try.
pub fn admit(config: &PoolConfig, waiting: u32, priority: Priority) -> Result<(), Rejection> {
    if priority == Priority::Low
        && config.shed_queue_depth > 0
        && waiting >= config.shed_queue_depth
    {
        return Err(Rejection::Shed {
            waiting,
            depth: config.shed_queue_depth,
        });
    }
    if config.max_waiting > 0 && waiting >= config.max_waiting {
        return Err(Rejection::QueueFull {
            size: config.pool_size.get(),
            max: config.max_waiting,
        });
    }
    Ok(())
}
