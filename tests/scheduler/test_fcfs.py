from fairgate.scheduler import Job, Scheduler, SchedulerConfig


def test_admits_in_arrival_order_across_tenants():
    sched = Scheduler(
        SchedulerConfig(
            policy="fcfs", router="round_robin", inflight_initial=1, inflight_ceiling=max(64, 1)
        )
    )
    sched.add_replica("r", "m")
    for i, tenant in enumerate("abbbab"):
        sched.arrive(Job(f"j{i}", tenant, "m", (i,), 1), float(i))
    order = []
    for _ in range(6):
        (dispatch,) = sched.admit(10.0)
        order.append(dispatch.job_id)
        sched.finish(dispatch.job_id, 10.0)
    assert order == [f"j{i}" for i in range(6)]
