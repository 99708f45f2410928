// Populate the sidebar
//
// This is a script, and not included directly in the page, to control the total size of the book.
// The TOC contains an entry for each page, so if each page includes a copy of the TOC,
// the total size of the page becomes O(n**2).
class MDBookSidebarScrollbox extends HTMLElement {
    constructor() {
        super();
    }
    connectedCallback() {
        this.innerHTML = '<ol class="chapter"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="index.html">Start here</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="mutex.html"><strong aria-hidden="true">1.</strong> sync.Mutex</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_fb12a4e4.html"><strong aria-hidden="true">1.1.</strong> etcd_fb12a4e4</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_3017.html"><strong aria-hidden="true">1.2.</strong> grpc_3017</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_795.html"><strong aria-hidden="true">1.3.</strong> grpc_795</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_45192.html"><strong aria-hidden="true">1.4.</strong> kubernetes_45192</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_17176.html"><strong aria-hidden="true">1.5.</strong> moby_17176</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_31273.html"><strong aria-hidden="true">1.6.</strong> moby_31273</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_36114.html"><strong aria-hidden="true">1.7.</strong> moby_36114</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_4951.html"><strong aria-hidden="true">1.8.</strong> moby_4951</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_7559.html"><strong aria-hidden="true">1.9.</strong> moby_7559</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_8909.html"><strong aria-hidden="true">1.10.</strong> moby_8909</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="rwmutex.html"><strong aria-hidden="true">2.</strong> sync.RWMutex</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_10419.html"><strong aria-hidden="true">2.1.</strong> etcd_10419</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_10492.html"><strong aria-hidden="true">2.2.</strong> etcd_10492</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_5509.html"><strong aria-hidden="true">2.3.</strong> etcd_5509</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_6708.html"><strong aria-hidden="true">2.4.</strong> etcd_6708</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_ae062a08.html"><strong aria-hidden="true">2.5.</strong> etcd_ae062a08</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_13135.html"><strong aria-hidden="true">2.6.</strong> kubernetes_13135</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_20697.html"><strong aria-hidden="true">2.7.</strong> kubernetes_20697</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_30872.html"><strong aria-hidden="true">2.8.</strong> kubernetes_30872</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_5cc841a3.html"><strong aria-hidden="true">2.9.</strong> kubernetes_5cc841a3</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_62464.html"><strong aria-hidden="true">2.10.</strong> kubernetes_62464</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_22732.html"><strong aria-hidden="true">2.11.</strong> moby_22732</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_25111.html"><strong aria-hidden="true">2.12.</strong> moby_25111</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_25642.html"><strong aria-hidden="true">2.13.</strong> moby_25642</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_34881.html"><strong aria-hidden="true">2.14.</strong> moby_34881</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="waitgroup.html"><strong aria-hidden="true">3.</strong> sync.WaitGroup</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_6534.html"><strong aria-hidden="true">3.1.</strong> etcd_6534</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_13058.html"><strong aria-hidden="true">3.2.</strong> kubernetes_13058</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_25384.html"><strong aria-hidden="true">3.3.</strong> moby_25384</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_27011.html"><strong aria-hidden="true">3.4.</strong> moby_27011</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_28161.html"><strong aria-hidden="true">3.5.</strong> moby_28161</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="cond.html"><strong aria-hidden="true">4.</strong> sync.Cond</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_119554.html"><strong aria-hidden="true">4.1.</strong> kubernetes_119554</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_15965.html"><strong aria-hidden="true">4.2.</strong> moby_15965</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/swarmkit_2744.html"><strong aria-hidden="true">4.3.</strong> swarmkit_2744</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="once.html"><strong aria-hidden="true">5.</strong> sync.Once</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_25802.html"><strong aria-hidden="true">5.1.</strong> moby_25802</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="channels.html"><strong aria-hidden="true">6.</strong> Channels</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/containerd_872.html"><strong aria-hidden="true">6.1.</strong> containerd_872</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_4033.html"><strong aria-hidden="true">6.2.</strong> etcd_4033</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_4474.html"><strong aria-hidden="true">6.3.</strong> etcd_4474</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_5199.html"><strong aria-hidden="true">6.4.</strong> etcd_5199</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_5349.html"><strong aria-hidden="true">6.5.</strong> etcd_5349</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_5505.html"><strong aria-hidden="true">6.6.</strong> etcd_5505</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_6855.html"><strong aria-hidden="true">6.7.</strong> etcd_6855</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_6857.html"><strong aria-hidden="true">6.8.</strong> etcd_6857</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_9956.html"><strong aria-hidden="true">6.9.</strong> etcd_9956</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1111.html"><strong aria-hidden="true">6.10.</strong> grpc_1111</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1424.html"><strong aria-hidden="true">6.11.</strong> grpc_1424</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1460.html"><strong aria-hidden="true">6.12.</strong> grpc_1460</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1687.html"><strong aria-hidden="true">6.13.</strong> grpc_1687</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_2371.html"><strong aria-hidden="true">6.14.</strong> grpc_2371</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_2695.html"><strong aria-hidden="true">6.15.</strong> grpc_2695</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_660.html"><strong aria-hidden="true">6.16.</strong> grpc_660</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_ceacfbcb.html"><strong aria-hidden="true">6.17.</strong> grpc_ceacfbcb</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_29743.html"><strong aria-hidden="true">6.18.</strong> kubernetes_29743</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_38669.html"><strong aria-hidden="true">6.19.</strong> kubernetes_38669</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_38857.html"><strong aria-hidden="true">6.20.</strong> kubernetes_38857</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_5316.html"><strong aria-hidden="true">6.21.</strong> kubernetes_5316</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_70277.html"><strong aria-hidden="true">6.22.</strong> kubernetes_70277</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_72361.html"><strong aria-hidden="true">6.23.</strong> kubernetes_72361</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_21233.html"><strong aria-hidden="true">6.24.</strong> moby_21233</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_21311.html"><strong aria-hidden="true">6.25.</strong> moby_21311</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_24007.html"><strong aria-hidden="true">6.26.</strong> moby_24007</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_256.html"><strong aria-hidden="true">6.27.</strong> moby_256</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_33293.html"><strong aria-hidden="true">6.28.</strong> moby_33293</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_35482.html"><strong aria-hidden="true">6.29.</strong> moby_35482</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_4395.html"><strong aria-hidden="true">6.30.</strong> moby_4395</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_d55998be.html"><strong aria-hidden="true">6.31.</strong> moby_d55998be</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="select.html"><strong aria-hidden="true">7.</strong> select</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1275.html"><strong aria-hidden="true">7.1.</strong> grpc_1275</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_639.html"><strong aria-hidden="true">7.2.</strong> grpc_639</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_35672.html"><strong aria-hidden="true">7.3.</strong> kubernetes_35672</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="context.html"><strong aria-hidden="true">8.</strong> context</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_36f5b713.html"><strong aria-hidden="true">8.1.</strong> etcd_36f5b713</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_4679.html"><strong aria-hidden="true">8.2.</strong> etcd_4679</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7283.html"><strong aria-hidden="true">8.3.</strong> etcd_7283</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7b7feb46.html"><strong aria-hidden="true">8.4.</strong> etcd_7b7feb46</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_cb9a3e04.html"><strong aria-hidden="true">8.5.</strong> etcd_cb9a3e04</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1505.html"><strong aria-hidden="true">8.6.</strong> grpc_1505</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_490.html"><strong aria-hidden="true">8.7.</strong> grpc_490</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_862.html"><strong aria-hidden="true">8.8.</strong> grpc_862</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_25331.html"><strong aria-hidden="true">8.9.</strong> kubernetes_25331</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_28682.html"><strong aria-hidden="true">8.10.</strong> moby_28682</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_33781.html"><strong aria-hidden="true">8.11.</strong> moby_33781</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="timers.html"><strong aria-hidden="true">9.</strong> Timers</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_21692.html"><strong aria-hidden="true">9.1.</strong> moby_21692</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="mixed.html"><strong aria-hidden="true">10.</strong> Channels and locks together</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_6873.html"><strong aria-hidden="true">10.1.</strong> etcd_6873</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_6937.html"><strong aria-hidden="true">10.2.</strong> etcd_6937</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7443.html"><strong aria-hidden="true">10.3.</strong> etcd_7443</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7471.html"><strong aria-hidden="true">10.4.</strong> etcd_7471</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7492.html"><strong aria-hidden="true">10.5.</strong> etcd_7492</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7902.html"><strong aria-hidden="true">10.6.</strong> etcd_7902</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_9074.html"><strong aria-hidden="true">10.7.</strong> etcd_9074</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1353.html"><strong aria-hidden="true">10.8.</strong> grpc_1353</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1850.html"><strong aria-hidden="true">10.9.</strong> grpc_1850</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_10182.html"><strong aria-hidden="true">10.10.</strong> kubernetes_10182</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_11298.html"><strong aria-hidden="true">10.11.</strong> kubernetes_11298</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_1321.html"><strong aria-hidden="true">10.12.</strong> kubernetes_1321</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_136509.html"><strong aria-hidden="true">10.13.</strong> kubernetes_136509</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_16223.html"><strong aria-hidden="true">10.14.</strong> kubernetes_16223</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_16851.html"><strong aria-hidden="true">10.15.</strong> kubernetes_16851</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_21112.html"><strong aria-hidden="true">10.16.</strong> kubernetes_21112</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_26980.html"><strong aria-hidden="true">10.17.</strong> kubernetes_26980</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_58107.html"><strong aria-hidden="true">10.18.</strong> kubernetes_58107</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_6632.html"><strong aria-hidden="true">10.19.</strong> kubernetes_6632</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_0d9e5436.html"><strong aria-hidden="true">10.20.</strong> moby_0d9e5436</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_27782.html"><strong aria-hidden="true">10.21.</strong> moby_27782</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_28462.html"><strong aria-hidden="true">10.22.</strong> moby_28462</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_29733.html"><strong aria-hidden="true">10.23.</strong> moby_29733</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_30408.html"><strong aria-hidden="true">10.24.</strong> moby_30408</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/swarmkit_1347.html"><strong aria-hidden="true">10.25.</strong> swarmkit_1347</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/wsgateway_broadcast.html"><strong aria-hidden="true">10.26.</strong> wsgateway_broadcast</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="memory-model.html"><strong aria-hidden="true">11.</strong> The memory model: data races</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_0b77b42c.html"><strong aria-hidden="true">11.1.</strong> etcd_0b77b42c</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_2e59635b.html"><strong aria-hidden="true">11.2.</strong> etcd_2e59635b</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_3077.html"><strong aria-hidden="true">11.3.</strong> etcd_3077</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_3593.html"><strong aria-hidden="true">11.4.</strong> etcd_3593</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_3972.html"><strong aria-hidden="true">11.5.</strong> etcd_3972</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_4876.html"><strong aria-hidden="true">11.6.</strong> etcd_4876</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_4997.html"><strong aria-hidden="true">11.7.</strong> etcd_4997</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_5ee85bea.html"><strong aria-hidden="true">11.8.</strong> etcd_5ee85bea</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_6324.html"><strong aria-hidden="true">11.9.</strong> etcd_6324</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7664.html"><strong aria-hidden="true">11.10.</strong> etcd_7664</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7816.html"><strong aria-hidden="true">11.11.</strong> etcd_7816</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_7adb7656.html"><strong aria-hidden="true">11.12.</strong> etcd_7adb7656</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_8183.html"><strong aria-hidden="true">11.13.</strong> etcd_8183</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_8194.html"><strong aria-hidden="true">11.14.</strong> etcd_8194</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/etcd_9446.html"><strong aria-hidden="true">11.15.</strong> etcd_9446</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_0be94ab3.html"><strong aria-hidden="true">11.16.</strong> grpc_0be94ab3</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1318.html"><strong aria-hidden="true">11.17.</strong> grpc_1318</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1540.html"><strong aria-hidden="true">11.18.</strong> grpc_1540</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1662.html"><strong aria-hidden="true">11.19.</strong> grpc_1662</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1667.html"><strong aria-hidden="true">11.20.</strong> grpc_1667</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1748.html"><strong aria-hidden="true">11.21.</strong> grpc_1748</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_1803.html"><strong aria-hidden="true">11.22.</strong> grpc_1803</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_206.html"><strong aria-hidden="true">11.23.</strong> grpc_206</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_2074.html"><strong aria-hidden="true">11.24.</strong> grpc_2074</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_2542.html"><strong aria-hidden="true">11.25.</strong> grpc_2542</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_3090.html"><strong aria-hidden="true">11.26.</strong> grpc_3090</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_46e80bf1.html"><strong aria-hidden="true">11.27.</strong> grpc_46e80bf1</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_1134.html"><strong aria-hidden="true">11.28.</strong> kubernetes_1134</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_18921.html"><strong aria-hidden="true">11.29.</strong> kubernetes_18921</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_26407.html"><strong aria-hidden="true">11.30.</strong> kubernetes_26407</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_28153.html"><strong aria-hidden="true">11.31.</strong> kubernetes_28153</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_309.html"><strong aria-hidden="true">11.32.</strong> kubernetes_309</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_36377.html"><strong aria-hidden="true">11.33.</strong> kubernetes_36377</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_37560.html"><strong aria-hidden="true">11.34.</strong> kubernetes_37560</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_49404.html"><strong aria-hidden="true">11.35.</strong> kubernetes_49404</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_49985.html"><strong aria-hidden="true">11.36.</strong> kubernetes_49985</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_587.html"><strong aria-hidden="true">11.37.</strong> kubernetes_587</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_70892.html"><strong aria-hidden="true">11.38.</strong> kubernetes_70892</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_77796.html"><strong aria-hidden="true">11.39.</strong> kubernetes_77796</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_796.html"><strong aria-hidden="true">11.40.</strong> kubernetes_796</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_79631.html"><strong aria-hidden="true">11.41.</strong> kubernetes_79631</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_80284.html"><strong aria-hidden="true">11.42.</strong> kubernetes_80284</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_81091.html"><strong aria-hidden="true">11.43.</strong> kubernetes_81091</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_81148.html"><strong aria-hidden="true">11.44.</strong> kubernetes_81148</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_82239.html"><strong aria-hidden="true">11.45.</strong> kubernetes_82239</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_82550.html"><strong aria-hidden="true">11.46.</strong> kubernetes_82550</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_88331.html"><strong aria-hidden="true">11.47.</strong> kubernetes_88331</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_89164.html"><strong aria-hidden="true">11.48.</strong> kubernetes_89164</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_9926.html"><strong aria-hidden="true">11.49.</strong> kubernetes_9926</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_aa808a65.html"><strong aria-hidden="true">11.50.</strong> kubernetes_aa808a65</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/libnetwork_1561.html"><strong aria-hidden="true">11.51.</strong> libnetwork_1561</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/libnetwork_1676.html"><strong aria-hidden="true">11.52.</strong> libnetwork_1676</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_11944.html"><strong aria-hidden="true">11.53.</strong> moby_11944</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_16309.html"><strong aria-hidden="true">11.54.</strong> moby_16309</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_18412.html"><strong aria-hidden="true">11.55.</strong> moby_18412</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_19407.html"><strong aria-hidden="true">11.56.</strong> moby_19407</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_21022.html"><strong aria-hidden="true">11.57.</strong> moby_21022</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_22940.html"><strong aria-hidden="true">11.58.</strong> moby_22940</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_22941.html"><strong aria-hidden="true">11.59.</strong> moby_22941</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_22969.html"><strong aria-hidden="true">11.60.</strong> moby_22969</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_22985.html"><strong aria-hidden="true">11.61.</strong> moby_22985</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_23317.html"><strong aria-hidden="true">11.62.</strong> moby_23317</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_26507.html"><strong aria-hidden="true">11.63.</strong> moby_26507</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_27037.html"><strong aria-hidden="true">11.64.</strong> moby_27037</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_2848.html"><strong aria-hidden="true">11.65.</strong> moby_2848</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_29191.html"><strong aria-hidden="true">11.66.</strong> moby_29191</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_29554.html"><strong aria-hidden="true">11.67.</strong> moby_29554</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_35517.html"><strong aria-hidden="true">11.68.</strong> moby_35517</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_36840.html"><strong aria-hidden="true">11.69.</strong> moby_36840</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_39643.html"><strong aria-hidden="true">11.70.</strong> moby_39643</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_40772.html"><strong aria-hidden="true">11.71.</strong> moby_40772</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_6118.html"><strong aria-hidden="true">11.72.</strong> moby_6118</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_d32f1846.html"><strong aria-hidden="true">11.73.</strong> moby_d32f1846</a></span></li></ol><li class="chapter-item "><span class="chapter-link-wrapper"><a href="order.html"><strong aria-hidden="true">12.</strong> Order and atomicity</a><a class="chapter-fold-toggle"><div>❱</div></a></span><ol class="section"><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/grpc_903.html"><strong aria-hidden="true">12.1.</strong> grpc_903</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/kubernetes_47157.html"><strong aria-hidden="true">12.2.</strong> kubernetes_47157</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/libnetwork_454.html"><strong aria-hidden="true">12.3.</strong> libnetwork_454</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_18196.html"><strong aria-hidden="true">12.4.</strong> moby_18196</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_30696.html"><strong aria-hidden="true">12.5.</strong> moby_30696</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="bugs/moby_9543.html"><strong aria-hidden="true">12.6.</strong> moby_9543</a></span></li></ol><li class="chapter-item "><li class="spacer"></li></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="projects.html">Index by project</a></span></li><li class="chapter-item "><span class="chapter-link-wrapper"><a href="left-out.html">Left out</a></span></li></ol>';
        // Set the current, active page, and reveal it if it's hidden
        let current_page = document.location.href.toString().split('#')[0].split('?')[0];
        if (current_page.endsWith('/')) {
            current_page += 'index.html';
        }
        const links = Array.prototype.slice.call(this.querySelectorAll('a'));
        const l = links.length;
        for (let i = 0; i < l; ++i) {
            const link = links[i];
            const href = link.getAttribute('href');
            if (href && !href.startsWith('#') && !/^(?:[a-z+]+:)?\/\//.test(href)) {
                link.href = path_to_root + href;
            }
            // The 'index' page is supposed to alias the first chapter in the book.
            // Check both with and without the '.html' suffix to be robust against pretty URLs
            if (link.href.replace(/\.html$/, '') === current_page.replace(/\.html$/, '')
                || i === 0
                && path_to_root === ''
                && current_page.endsWith('/index.html')) {
                link.classList.add('active');
                let parent = link.parentElement;
                while (parent) {
                    if (parent.tagName === 'LI' && parent.classList.contains('chapter-item')) {
                        parent.classList.add('expanded');
                    }
                    parent = parent.parentElement;
                }
            }
        }
        // Track and set sidebar scroll position
        this.addEventListener('click', e => {
            if (e.target.tagName === 'A') {
                const clientRect = e.target.getBoundingClientRect();
                const sidebarRect = this.getBoundingClientRect();
                sessionStorage.setItem('sidebar-scroll-offset', clientRect.top - sidebarRect.top);
            }
        }, { passive: true });
        const sidebarScrollOffset = sessionStorage.getItem('sidebar-scroll-offset');
        sessionStorage.removeItem('sidebar-scroll-offset');
        if (sidebarScrollOffset !== null) {
            // preserve sidebar scroll position when navigating via links within sidebar
            const activeSection = this.querySelector('.active');
            if (activeSection) {
                const clientRect = activeSection.getBoundingClientRect();
                const sidebarRect = this.getBoundingClientRect();
                const currentOffset = clientRect.top - sidebarRect.top;
                this.scrollTop += currentOffset - parseFloat(sidebarScrollOffset);
            }
        } else {
            // scroll sidebar to current active section when navigating via
            // 'next/previous chapter' buttons
            const activeSection = document.querySelector('#mdbook-sidebar .active');
            if (activeSection) {
                activeSection.scrollIntoView({ block: 'center' });
            }
        }
        // Toggle buttons
        const sidebarAnchorToggles = document.querySelectorAll('.chapter-fold-toggle');
        function toggleSection(ev) {
            ev.currentTarget.parentElement.parentElement.classList.toggle('expanded');
        }
        Array.from(sidebarAnchorToggles).forEach(el => {
            el.addEventListener('click', toggleSection);
        });
    }
}
window.customElements.define('mdbook-sidebar-scrollbox', MDBookSidebarScrollbox);


// ---------------------------------------------------------------------------
// Support for dynamically adding headers to the sidebar.

(function() {
    // This is used to detect which direction the page has scrolled since the
    // last scroll event.
    let lastKnownScrollPosition = 0;
    // This is the threshold in px from the top of the screen where it will
    // consider a header the "current" header when scrolling down.
    const defaultDownThreshold = 150;
    // Same as defaultDownThreshold, except when scrolling up.
    const defaultUpThreshold = 300;
    // The threshold is a virtual horizontal line on the screen where it
    // considers the "current" header to be above the line. The threshold is
    // modified dynamically to handle headers that are near the bottom of the
    // screen, and to slightly offset the behavior when scrolling up vs down.
    let threshold = defaultDownThreshold;
    // This is used to disable updates while scrolling. This is needed when
    // clicking the header in the sidebar, which triggers a scroll event. It
    // is somewhat finicky to detect when the scroll has finished, so this
    // uses a relatively dumb system of disabling scroll updates for a short
    // time after the click.
    let disableScroll = false;
    // Array of header elements on the page.
    let headers;
    // Array of li elements that are initially collapsed headers in the sidebar.
    // I'm not sure why eslint seems to have a false positive here.
    // eslint-disable-next-line prefer-const
    let headerToggles = [];
    // This is a debugging tool for the threshold which you can enable in the console.
    let thresholdDebug = false;

    // Updates the threshold based on the scroll position.
    function updateThreshold() {
        const scrollTop = window.pageYOffset || document.documentElement.scrollTop;
        const windowHeight = window.innerHeight;
        const documentHeight = document.documentElement.scrollHeight;

        // The number of pixels below the viewport, at most documentHeight.
        // This is used to push the threshold down to the bottom of the page
        // as the user scrolls towards the bottom.
        const pixelsBelow = Math.max(0, documentHeight - (scrollTop + windowHeight));
        // The number of pixels above the viewport, at least defaultDownThreshold.
        // Similar to pixelsBelow, this is used to push the threshold back towards
        // the top when reaching the top of the page.
        const pixelsAbove = Math.max(0, defaultDownThreshold - scrollTop);
        // How much the threshold should be offset once it gets close to the
        // bottom of the page.
        const bottomAdd = Math.max(0, windowHeight - pixelsBelow - defaultDownThreshold);
        let adjustedBottomAdd = bottomAdd;

        // Adjusts bottomAdd for a small document. The calculation above
        // assumes the document is at least twice the windowheight in size. If
        // it is less than that, then bottomAdd needs to be shrunk
        // proportional to the difference in size.
        if (documentHeight < windowHeight * 2) {
            const maxPixelsBelow = documentHeight - windowHeight;
            const t = 1 - pixelsBelow / Math.max(1, maxPixelsBelow);
            const clamp = Math.max(0, Math.min(1, t));
            adjustedBottomAdd *= clamp;
        }

        let scrollingDown = true;
        if (scrollTop < lastKnownScrollPosition) {
            scrollingDown = false;
        }

        if (scrollingDown) {
            // When scrolling down, move the threshold up towards the default
            // downwards threshold position. If near the bottom of the page,
            // adjustedBottomAdd will offset the threshold towards the bottom
            // of the page.
            const amountScrolledDown = scrollTop - lastKnownScrollPosition;
            const adjustedDefault = defaultDownThreshold + adjustedBottomAdd;
            threshold = Math.max(adjustedDefault, threshold - amountScrolledDown);
        } else {
            // When scrolling up, move the threshold down towards the default
            // upwards threshold position. If near the bottom of the page,
            // quickly transition the threshold back up where it normally
            // belongs.
            const amountScrolledUp = lastKnownScrollPosition - scrollTop;
            const adjustedDefault = defaultUpThreshold - pixelsAbove
                + Math.max(0, adjustedBottomAdd - defaultDownThreshold);
            threshold = Math.min(adjustedDefault, threshold + amountScrolledUp);
        }

        if (documentHeight <= windowHeight) {
            threshold = 0;
        }

        if (thresholdDebug) {
            const id = 'mdbook-threshold-debug-data';
            let data = document.getElementById(id);
            if (data === null) {
                data = document.createElement('div');
                data.id = id;
                data.style.cssText = `
                    position: fixed;
                    top: 50px;
                    right: 10px;
                    background-color: 0xeeeeee;
                    z-index: 9999;
                    pointer-events: none;
                `;
                document.body.appendChild(data);
            }
            data.innerHTML = `
                <table>
                  <tr><td>documentHeight</td><td>${documentHeight.toFixed(1)}</td></tr>
                  <tr><td>windowHeight</td><td>${windowHeight.toFixed(1)}</td></tr>
                  <tr><td>scrollTop</td><td>${scrollTop.toFixed(1)}</td></tr>
                  <tr><td>pixelsAbove</td><td>${pixelsAbove.toFixed(1)}</td></tr>
                  <tr><td>pixelsBelow</td><td>${pixelsBelow.toFixed(1)}</td></tr>
                  <tr><td>bottomAdd</td><td>${bottomAdd.toFixed(1)}</td></tr>
                  <tr><td>adjustedBottomAdd</td><td>${adjustedBottomAdd.toFixed(1)}</td></tr>
                  <tr><td>scrollingDown</td><td>${scrollingDown}</td></tr>
                  <tr><td>threshold</td><td>${threshold.toFixed(1)}</td></tr>
                </table>
            `;
            drawDebugLine();
        }

        lastKnownScrollPosition = scrollTop;
    }

    function drawDebugLine() {
        if (!document.body) {
            return;
        }
        const id = 'mdbook-threshold-debug-line';
        const existingLine = document.getElementById(id);
        if (existingLine) {
            existingLine.remove();
        }
        const line = document.createElement('div');
        line.id = id;
        line.style.cssText = `
            position: fixed;
            top: ${threshold}px;
            left: 0;
            width: 100vw;
            height: 2px;
            background-color: red;
            z-index: 9999;
            pointer-events: none;
        `;
        document.body.appendChild(line);
    }

    function mdbookEnableThresholdDebug() {
        thresholdDebug = true;
        updateThreshold();
        drawDebugLine();
    }

    window.mdbookEnableThresholdDebug = mdbookEnableThresholdDebug;

    // Updates which headers in the sidebar should be expanded. If the current
    // header is inside a collapsed group, then it, and all its parents should
    // be expanded.
    function updateHeaderExpanded(currentA) {
        // Add expanded to all header-item li ancestors.
        let current = currentA.parentElement;
        while (current) {
            if (current.tagName === 'LI' && current.classList.contains('header-item')) {
                current.classList.add('expanded');
            }
            current = current.parentElement;
        }
    }

    // Updates which header is marked as the "current" header in the sidebar.
    // This is done with a virtual Y threshold, where headers at or below
    // that line will be considered the current one.
    function updateCurrentHeader() {
        if (!headers || !headers.length) {
            return;
        }

        // Reset the classes, which will be rebuilt below.
        const els = document.getElementsByClassName('current-header');
        for (const el of els) {
            el.classList.remove('current-header');
        }
        for (const toggle of headerToggles) {
            toggle.classList.remove('expanded');
        }

        // Find the last header that is above the threshold.
        let lastHeader = null;
        for (const header of headers) {
            const rect = header.getBoundingClientRect();
            if (rect.top <= threshold) {
                lastHeader = header;
            } else {
                break;
            }
        }
        if (lastHeader === null) {
            lastHeader = headers[0];
            const rect = lastHeader.getBoundingClientRect();
            const windowHeight = window.innerHeight;
            if (rect.top >= windowHeight) {
                return;
            }
        }

        // Get the anchor in the summary.
        const href = '#' + lastHeader.id;
        const a = [...document.querySelectorAll('.header-in-summary')]
            .find(element => element.getAttribute('href') === href);
        if (!a) {
            return;
        }

        a.classList.add('current-header');

        updateHeaderExpanded(a);
    }

    // Updates which header is "current" based on the threshold line.
    function reloadCurrentHeader() {
        if (disableScroll) {
            return;
        }
        updateThreshold();
        updateCurrentHeader();
    }


    // When clicking on a header in the sidebar, this adjusts the threshold so
    // that it is located next to the header. This is so that header becomes
    // "current".
    function headerThresholdClick(event) {
        // See disableScroll description why this is done.
        disableScroll = true;
        setTimeout(() => {
            disableScroll = false;
        }, 100);
        // requestAnimationFrame is used to delay the update of the "current"
        // header until after the scroll is done, and the header is in the new
        // position.
        requestAnimationFrame(() => {
            requestAnimationFrame(() => {
                // Closest is needed because if it has child elements like <code>.
                const a = event.target.closest('a');
                const href = a.getAttribute('href');
                const targetId = href.substring(1);
                const targetElement = document.getElementById(targetId);
                if (targetElement) {
                    threshold = targetElement.getBoundingClientRect().bottom;
                    updateCurrentHeader();
                }
            });
        });
    }

    // Takes the nodes from the given head and copies them over to the
    // destination, along with some filtering.
    function filterHeader(source, dest) {
        const clone = source.cloneNode(true);
        clone.querySelectorAll('mark').forEach(mark => {
            mark.replaceWith(...mark.childNodes);
        });
        dest.append(...clone.childNodes);
    }

    // Scans page for headers and adds them to the sidebar.
    document.addEventListener('DOMContentLoaded', function() {
        const activeSection = document.querySelector('#mdbook-sidebar .active');
        if (activeSection === null) {
            return;
        }

        const main = document.getElementsByTagName('main')[0];
        headers = Array.from(main.querySelectorAll('h2, h3, h4, h5, h6'))
            .filter(h => h.id !== '' && h.children.length && h.children[0].tagName === 'A');

        if (headers.length === 0) {
            return;
        }

        // Build a tree of headers in the sidebar.

        const stack = [];

        const firstLevel = parseInt(headers[0].tagName.charAt(1));
        for (let i = 1; i < firstLevel; i++) {
            const ol = document.createElement('ol');
            ol.classList.add('section');
            if (stack.length > 0) {
                stack[stack.length - 1].ol.appendChild(ol);
            }
            stack.push({level: i + 1, ol: ol});
        }

        // The level where it will start folding deeply nested headers.
        const foldLevel = 3;

        for (let i = 0; i < headers.length; i++) {
            const header = headers[i];
            const level = parseInt(header.tagName.charAt(1));

            const currentLevel = stack[stack.length - 1].level;
            if (level > currentLevel) {
                // Begin nesting to this level.
                for (let nextLevel = currentLevel + 1; nextLevel <= level; nextLevel++) {
                    const ol = document.createElement('ol');
                    ol.classList.add('section');
                    const last = stack[stack.length - 1];
                    const lastChild = last.ol.lastChild;
                    // Handle the case where jumping more than one nesting
                    // level, which doesn't have a list item to place this new
                    // list inside of.
                    if (lastChild) {
                        lastChild.appendChild(ol);
                    } else {
                        last.ol.appendChild(ol);
                    }
                    stack.push({level: nextLevel, ol: ol});
                }
            } else if (level < currentLevel) {
                while (stack.length > 1 && stack[stack.length - 1].level > level) {
                    stack.pop();
                }
            }

            const li = document.createElement('li');
            li.classList.add('header-item');
            li.classList.add('expanded');
            if (level < foldLevel) {
                li.classList.add('expanded');
            }
            const span = document.createElement('span');
            span.classList.add('chapter-link-wrapper');
            const a = document.createElement('a');
            span.appendChild(a);
            a.href = '#' + header.id;
            a.classList.add('header-in-summary');
            filterHeader(header.children[0], a);
            a.addEventListener('click', headerThresholdClick);
            const nextHeader = headers[i + 1];
            if (nextHeader !== undefined) {
                const nextLevel = parseInt(nextHeader.tagName.charAt(1));
                if (nextLevel > level && level >= foldLevel) {
                    const toggle = document.createElement('a');
                    toggle.classList.add('chapter-fold-toggle');
                    toggle.classList.add('header-toggle');
                    toggle.addEventListener('click', () => {
                        li.classList.toggle('expanded');
                    });
                    const toggleDiv = document.createElement('div');
                    toggleDiv.textContent = '❱';
                    toggle.appendChild(toggleDiv);
                    span.appendChild(toggle);
                    headerToggles.push(li);
                }
            }
            li.appendChild(span);

            const currentParent = stack[stack.length - 1];
            currentParent.ol.appendChild(li);
        }

        const onThisPage = document.createElement('div');
        onThisPage.classList.add('on-this-page');
        onThisPage.append(stack[0].ol);
        const activeItemSpan = activeSection.parentElement;
        activeItemSpan.after(onThisPage);
    });

    document.addEventListener('DOMContentLoaded', reloadCurrentHeader);
    document.addEventListener('scroll', reloadCurrentHeader, { passive: true });
})();

