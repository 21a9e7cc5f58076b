"""Applications (有条件共享申请, 依申请开放申请) and their working-day deadlines."""
