nice: ‘./genlab-kb’: No such file or directory
