package redistest

import "testing"

func TestStartCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: six redis-servers")
	}
	c := StartCluster(t, Server{})
	p, r := c.Primary(t, "asynq:{refunds}:pending")
	o, n := c.Failover(t, "asynq:{refunds}:pending")
	if o != p || n != r {
		t.Fatalf("failover %d→%d, want %d→%d", o, n, p, r)
	}
}
