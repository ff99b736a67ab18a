package redisconn

// ACLRules are the permissions of the Redis ACL user refundd needs — the
// worker (asynq's server), the producers (tasks, refundctl, the API), the
// dashboard (asynqmon), the health checks, the shared 2Checkout budget,
// the window sweep, deadline-first dispatch and the webhooks — and no more:
//
//	ACL SETUSER refundd on >PASSWORD <ACLRules>
//
// Keys: asynq's (asynq:*, its queues and servers), refundd's own
// (refundd:*, every one of a queue's in its slot) and the budget's limiter
// (rate:refundd:*). Channel: asynq:cancel (the dashboard's "cancel").
// Commands: those asynq, go-redis and refundd send, and those their
// scripts call (Redis checks a script's commands against the user too).
// command and cluster|… serve a redis-cluster:// client (cluster|nodes
// the dashboard's cluster page); select a database other than 0.
//
// TestACLUser and TestFleetSurvivesClusterFailover run refundd as a user
// with exactly these rules and the default user off; docs/redis.md shows
// them.
const ACLRules = "resetkeys ~asynq:* ~refundd:* ~rate:refundd:* resetchannels &asynq:cancel -@all " +
	"+hello +auth +ping +select +info +time +command +cluster|info +cluster|slots +cluster|nodes +cluster|keyslot " +
	"+evalsha +eval +publish +subscribe " +
	"+get +set +setex +del +exists +expire +expireat +pexpire +pttl +incr +memory|usage " +
	"+hget +hmget +hgetall +hkeys +hset +hsetnx +hincrby +hdel +hvals " +
	"+llen +lpush +rpush +lrange +lrem +rpoplpush " +
	"+sadd +srem +smembers +sismember " +
	"+zadd +zcard +zcount +zrange +zrangebyscore +zrevrange +zscore +zrem +zremrangebyscore +zremrangebyrank"
