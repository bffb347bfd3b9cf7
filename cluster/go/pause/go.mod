// The Pod sandbox's `pause` process, built here since no image can be pulled.
module housing.local/cluster/pause

go 1.24
